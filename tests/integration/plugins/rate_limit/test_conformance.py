"""One suite, both backends: the Lua scripts on a real redis-server and the in-process
backend on an injected clock must take the same decisions."""

from __future__ import annotations

import itertools

from plugins.rate_limit.config import SlidingWindow, TokenBucket
from plugins.rate_limit.limits import compile_limit
from tests.integration.plugins.rate_limit.conftest import Harness

_ids = itertools.count()


def fresh_keys(n: int) -> list[str]:
    tag = next(_ids)
    return [f"t:v1:rl:{{conf:{tag}}}:l{i}" for i in range(n)]


def sw(limit: int, window: float, precision: int | None = None):  # type: ignore[no-untyped-def]
    return compile_limit(SlidingWindow(limit=limit, window=window, precision=precision), "sw")


def tb(rate: int, period: float = 1.0, burst: int | None = None):  # type: ignore[no-untyped-def]
    return compile_limit(TokenBucket(rate=rate, period=period, burst=burst), "tb")


async def test_sliding_window_admits_exactly_the_limit(harness: Harness) -> None:
    limits = (sw(50, 60),)
    results = await harness.decide_many(fresh_keys(1), limits, 80)
    allowed = [r for r in results if r.allowed]
    assert len(allowed) == 50
    assert [r.remaining for r in allowed] == list(range(49, -1, -1))
    refused = [r for r in results if not r.allowed]
    assert all(r.remaining == 0 and r.limit == 50 for r in refused)
    # The oldest unit frees up within one window plus the sub-window it was taken in.
    assert all(0 < r.retry_ms <= 61_000 for r in refused)


async def test_cost_greater_than_one(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (sw(10, 60),)
    first = await harness.decide(keys, limits, cost=4)
    second = await harness.decide(keys, limits, cost=4)
    third = await harness.decide(keys, limits, cost=4)
    assert (first.allowed, first.remaining) == (True, 6)
    assert (second.allowed, second.remaining) == (True, 2)
    assert not third.allowed and third.remaining == 2
    # What is left still fits a smaller request.
    fits = await harness.decide(keys, limits, cost=2)
    assert fits.allowed and fits.remaining == 0


async def test_all_or_nothing_across_limits(harness: Harness) -> None:
    keys = fresh_keys(2)
    limits = (sw(100, 60), tb(1, period=60, burst=5))
    ok = await harness.decide(keys, limits, cost=4)
    assert ok.allowed
    assert ok.index == 1 and ok.remaining == 1  # the bucket is the tightest
    refused = await harness.decide(keys, limits, cost=3)
    assert not refused.allowed and refused.index == 1
    # Nothing was taken from the window by the refused request: 100 - 4 - 1 = 95.
    after = await harness.decide(keys[:1], (limits[0],), cost=1)
    assert after.allowed and after.remaining == 95


async def test_token_bucket_burst_then_refusal(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (tb(5, burst=10),)
    results = await harness.decide_many(keys, limits, 12)
    assert [r.allowed for r in results] == [True] * 10 + [False] * 2
    assert [r.remaining for r in results[:10]] == list(range(9, -1, -1))
    # One token comes back every 200 ms; the bucket is full again 2 s after it emptied.
    for r in results[10:]:
        assert 0 < r.retry_ms <= 200
        assert 1_500 < r.reset_ms <= 2_000


async def test_token_bucket_sub_one_per_second_refill(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (tb(1, period=2.0),)  # half a token per second
    assert (await harness.decide(keys, limits)).allowed
    refused = await harness.decide(keys, limits)
    assert not refused.allowed
    assert 1_000 < refused.retry_ms <= 2_000
    assert refused.retry_after == 2
    await harness.advance(1.0)
    assert not (await harness.decide(keys, limits)).allowed  # only half a token back
    await harness.advance(1.1)
    again = await harness.decide(keys, limits)
    assert again.allowed and again.remaining == 0


async def test_sliding_window_boundary(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (sw(3, 1.0, precision=10),)
    assert all(r.allowed for r in await harness.decide_many(keys, limits, 3))
    refused = await harness.decide(keys, limits)
    assert not refused.allowed and 800 < refused.retry_ms <= 1_100
    await harness.advance(0.5)
    # Half a window later the units still count: a sliding window does not reset on a
    # wall-clock boundary the way a fixed window would.
    mid = await harness.decide(keys, limits)
    assert not mid.allowed and mid.retry_ms <= 600
    await harness.advance(0.6)
    after = await harness.decide(keys, limits)
    assert after.allowed and after.remaining == 2


async def test_sliding_window_units_leave_in_order(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (sw(2, 1.0, precision=10),)
    assert (await harness.decide(keys, limits)).allowed
    await harness.advance(0.5)
    assert (await harness.decide(keys, limits)).allowed
    refused = await harness.decide(keys, limits)
    assert not refused.allowed and refused.retry_ms <= 600  # the first unit leaves first
    await harness.advance(0.65)
    first_gone = await harness.decide(keys, limits)
    assert first_gone.allowed and first_gone.remaining == 0


async def test_every_key_has_a_ttl_within_its_window(harness: Harness) -> None:
    keys = fresh_keys(2)
    limits = (sw(10, 2.0, precision=4), tb(1, period=1.0, burst=3))
    await harness.decide_many(keys, limits, 2)
    window_ttl, bucket_ttl = await harness.ttl_ms(keys[0]), await harness.ttl_ms(keys[1])
    assert 0 < window_ttl <= 2_500  # the window and the sub-window the units fell in
    assert 0 < bucket_ttl <= 2_000  # two tokens short at one per second
    await harness.advance(2.7)
    assert await harness.ttl_ms(keys[0]) == -2
    assert await harness.ttl_ms(keys[1]) == -2


async def test_no_window_admits_more_than_the_limit(harness: Harness) -> None:
    # A unit taken mid-bucket must still count a full window later, not only until its
    # bucket's start plus the window.
    keys, limits = fresh_keys(1), (sw(1, 1.0, precision=2),)
    await harness.align(0.5, 0.2)
    assert (await harness.decide(keys, limits)).allowed
    await harness.advance(0.85)  # past the first bucket's start + 1 s; 0.15 s before t0 + 1 s
    refused = await harness.decide(keys, limits)
    assert not refused.allowed and refused.retry_ms > 0
    await harness.advance(0.7)  # the unit's bucket has left the window
    assert (await harness.decide(keys, limits)).allowed


async def test_window_expiry_follows_its_newest_bucket(harness: Harness) -> None:
    # Writes to the same bucket keep the expiry; a write to a new bucket moves it out.
    keys, limits = fresh_keys(1), (sw(100, 1.0, precision=2),)
    await harness.align(0.5, 0.1)
    assert (await harness.decide(keys, limits)).allowed
    first = await harness.ttl_ms(keys[0])
    assert (await harness.decide(keys, limits)).allowed
    assert await harness.ttl_ms(keys[0]) <= first
    await harness.advance(0.5)  # the next 500 ms bucket: the expiry moves out by 500 ms
    assert (await harness.decide(keys, limits)).allowed
    assert await harness.ttl_ms(keys[0]) > first - 250
    await harness.advance(1.05)  # the first bucket has left the window, the second has not
    after = await harness.decide(keys, limits)
    assert after.allowed and after.remaining == 100 - 2


async def test_trim_then_refusal_keeps_the_count_exact(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (sw(3, 1.0, precision=4),)
    await harness.align(0.25, 0.05)
    assert (await harness.decide(keys, limits)).allowed
    await harness.advance(0.5)
    assert (await harness.decide_many(keys, limits, 2))[-1].allowed
    await harness.advance(0.8)  # the first unit's bucket leaves: the next decision trims it
    big = await harness.decide(keys, limits, cost=3)  # refused, commits nothing
    assert not big.allowed and big.remaining == 1
    again = await harness.decide(keys, limits)
    assert again.allowed and again.remaining == 0


async def test_refusal_consumes_nothing_and_writes_no_ttl_extension(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (tb(1, period=1.0, burst=1),)
    assert (await harness.decide(keys, limits)).allowed
    before = await harness.ttl_ms(keys[0])
    for _ in range(5):
        assert not (await harness.decide(keys, limits)).allowed
    assert await harness.ttl_ms(keys[0]) <= before


async def test_tier_change_keeps_window_usage(harness: Harness) -> None:
    # Same window, different limit: the stored usage carries over to the new limit.
    keys = fresh_keys(1)
    await harness.decide_many(keys, (sw(5, 60),), 4)
    bigger = await harness.decide(keys, (sw(50, 60),))
    assert bigger.allowed and bigger.remaining == 45


async def test_reset_is_when_the_limit_is_unused_again(harness: Harness) -> None:
    keys, limits = fresh_keys(1), (sw(10, 60),)
    d = await harness.decide(keys, limits)
    assert 59_000 <= d.reset_ms <= 61_000
    assert d.reset_epoch * 1000 >= d.now_ms + d.reset_ms
