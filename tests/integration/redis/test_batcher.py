"""The Redis batcher against a real redis-server: coalescing, NOSCRIPT, outages."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time

import coredis
import pytest

from hotpath.redis.batcher import Pending
from hotpath.redis.link import Links, RespLink
from hotpath.redis.resp import LinkDown, ReplyError, hash_slot, is_outage
from plugins.rate_limit.backends.redis import DecisionBatcher, plans_of
from plugins.rate_limit.config import SlidingWindow, TokenBucket
from plugins.rate_limit.limits import compile_limit
from tests.support.coredis_client import entered
from tests.support.processes import RedisServer

LIMIT = compile_limit(SlidingWindow(limit=1000, window=60), "w")
ARGS = (1, 1, *LIMIT.params())


def key(i: int) -> list[str]:
    return [f"t:v1:rl:{{b:{i}}}:{LIMIT.suffix}"]


class NoMap(Links):
    """Links that know no node for any slot: calls go through coredis, the path a Cluster
    call takes after a redirect."""

    def for_slot(self, slot: int) -> RespLink | None:
        return None


@pytest.fixture(params=["coredis", "link"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every batcher behaviour holds on both paths: the lean link, and coredis."""
    return str(request.param)


def batcher(client: coredis.Redis[bytes], url: str, transport: str, **options: float) -> DecisionBatcher:
    link = RespLink.from_url(url, connect_timeout=0.5)
    links = Links(link) if transport == "link" else NoMap(link)
    kw: dict[str, float] = {"timeout": 2.0, **options}
    return DecisionBatcher(links, client=client, **kw)


async def close(b: DecisionBatcher) -> None:
    await b.close()
    b.links.close()  # owned by SharedState in the gateway


async def test_one_tick_of_decisions_is_one_script_call(redis_server: RedisServer, transport: str) -> None:
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        b = batcher(client, redis_server.url, transport)
        futs = [b.submit(key(i), ARGS) for i in range(100)]
        results = await asyncio.gather(*(f for f in futs if f is not None))
        assert all(r is not None and r.allowed for r in results)
        assert (b.calls, b.decisions) == (1, 100)
        # Batches grow while one is in flight: 300 decisions over a few ticks, few calls.
        for _ in range(3):
            futs = [b.submit(key(i), ARGS) for i in range(100)]
            await asyncio.sleep(0)
            futs += [b.submit(key(i), ARGS) for i in range(100)]
            await asyncio.gather(*(f for f in futs if f is not None))
        assert b.decisions == 700 and b.calls <= 7
        await close(b)


async def test_one_call_carries_several_plans(redis_server: RedisServer, transport: str) -> None:
    """Decisions of different plans (costs, limit kinds, limit counts) interleaved in one
    call: each plan travels once, and every decision is made under its own plan."""
    small = compile_limit(SlidingWindow(limit=3, window=60), "small")
    bucket = compile_limit(TokenBucket(rate=1, period=60, burst=4), "bucket")
    plans = {
        "window": (1, 1, *small.params()),
        "pair": (2, 2, *bucket.params(), *LIMIT.params()),  # cost 2 against a bucket of 4
    }
    keys = {
        "window": [f"t:v1:rl:{{mix-{transport}:w}}:{small.suffix}"],
        "pair": [f"t:v1:rl:{{mix-{transport}:p}}:{bucket.suffix}", f"t:v1:rl:{{mix-{transport}:p}}:{LIMIT.suffix}"],
    }
    order = ["window", "pair", "window", "pair", "window", "pair", "window"]
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        b = batcher(client, redis_server.url, transport)
        try:
            futs = [b.submit(keys[name], plans[name]) for name in order]
            results = await asyncio.gather(*(f for f in futs if f is not None))
            assert (b.calls, b.decisions) == (1, len(order))
            got = [(r.allowed, r.remaining) for r in results if r is not None]
            # window: 3 of 4 admitted; pair: two of three (cost 2 from a burst of 4).
            assert got == [(True, 2), (True, 2), (True, 1), (True, 0), (True, 0), (False, 0), (False, 0)]
            refused = results[5]
            assert refused is not None and refused.index == 0 and refused.retry_ms > 0
            # The refused pair consumed nothing from its window either (all or nothing).
            assert int(await client.hget(keys["pair"][1], "t") or 0) == 4
        finally:
            await close(b)


def test_plans_travel_once_per_call() -> None:
    loop = asyncio.new_event_loop()
    try:
        a, c = (1, 1, *LIMIT.params()), (3, 1, *LIMIT.params())
        batch = [Pending(loop.create_future(), key(i), args, 0.0) for i, args in enumerate((a, c, a, a, c))]
        assert plans_of(batch) == ([a, c], [1, 2, 1, 1, 2])
        b = DecisionBatcher(Links(RespLink("127.0.0.1", 1, connect_timeout=0.1)), timeout=1.0)
        assert b.argv(batch) == [2, *a, *c, 1, 2, 1, 1, 2]
    finally:
        loop.close()


async def test_linger_coalesces_decisions_spread_over_several_ticks(redis_server: RedisServer, transport: str) -> None:
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        eager = batcher(client, redis_server.url, transport)
        lingering = batcher(client, redis_server.url, transport, linger=0.05)
        for b in (eager, lingering):
            futs = []
            for i in range(5):  # one decision per tick, as requests arrive at moderate load
                futs.append(b.submit(key(i), ARGS))
                await asyncio.sleep(0)
            await asyncio.gather(*(f for f in futs if f is not None))
        assert eager.calls >= 2  # without linger the first lone decision goes out on its own
        assert (lingering.calls, lingering.decisions) == (1, 5)
        # A full batch does not wait for the linger to run out.
        full = batcher(client, redis_server.url, transport, linger=5.0, max_batch=4)
        started = time.monotonic()
        futs = [full.submit(key(i), ARGS) for i in range(4)]
        await asyncio.gather(*(f for f in futs if f is not None))
        assert time.monotonic() - started < 2.0
        # Nor does one that has min_batch decisions: they go at the end of the tick, with
        # the rest of that tick, and the timer is cancelled, so a later lone decision waits
        # for its own linger.
        company = batcher(client, redis_server.url, transport, linger=0.3, min_batch=3)
        started = time.monotonic()
        futs = [company.submit(key(i), ARGS) for i in range(5)]
        await asyncio.gather(*(f for f in futs if f is not None))
        assert time.monotonic() - started < 0.25
        assert (company.calls, company.decisions) == (1, 5)
        await asyncio.sleep(0.2)
        late = company.submit(key(9), ARGS)
        assert late is not None
        await asyncio.sleep(0.15)  # past the first timer, short of the second
        assert not late.done()
        await late
        assert company.calls == 2
        for b in (eager, lingering, full, company):
            await close(b)


async def decided(b: DecisionBatcher) -> None:
    """One decision through ``b``: its lean link is connected afterwards, so the next call is
    written at once instead of queued behind a connection attempt."""
    fut = b.submit(key(0), ARGS)
    assert fut is not None and (await fut) is not None


@pytest.fixture(params=["cold", "warm"])
def warm(request: pytest.FixtureRequest) -> bool:
    return request.param == "warm"


async def test_noscript_is_recovered_transparently(redis_server: RedisServer, transport: str, warm: bool) -> None:
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        b = batcher(client, redis_server.url, transport)
        await b.start()
        if warm:
            await decided(b)
        redis_server.cli("script", "flush")
        fut = b.submit(key(1), ARGS)
        assert fut is not None and (await fut) is not None
        assert b.script_loads == 1
        assert b.calls == 1 + warm
        await close(b)


async def test_slow_redis_never_holds_a_decision_past_the_timeout(transport: str, warm: bool) -> None:
    server = RedisServer()
    try:
        client = coredis.Redis.from_url(server.url, connect_timeout=1, stream_timeout=5)
        async with entered(client):
            b = batcher(client, server.url, transport, timeout=0.3, retry_interval=1.0)
            await b.start()
            if warm:
                await decided(b)
            # Redis stops answering (a stalled host, a long fork): SIGSTOP, not a refusal.
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            started = time.monotonic()
            futs = [b.submit(key(i), ARGS) for i in range(10)]
            await asyncio.sleep(0.05)
            futs += [b.submit(key(i), ARGS) for i in range(10)]  # queued behind the first call
            results = await asyncio.gather(*(f for f in futs if f is not None))
            elapsed = time.monotonic() - started
            assert results == [None] * 20
            assert elapsed < 0.3 + 0.5  # the timeout, plus a loaded-machine margin
            # Known down: decisions skip Redis at once instead of waiting again.
            assert b.submit(key(1), ARGS) is None and not b.available
            os.kill(server.proc.pid, signal.SIGCONT)
            # After the retry interval Redis decides again (a link that gave up on its
            # connection makes a new one).
            await asyncio.sleep(1.0)
            await decided(b)
            await close(b)
    finally:
        server.stop()


async def test_closing_fails_decisions_waiting_on_a_stalled_redis(transport: str) -> None:
    server = RedisServer()
    try:
        client = coredis.Redis.from_url(server.url, connect_timeout=1, stream_timeout=5)
        async with entered(client):
            b = batcher(client, server.url, transport, timeout=5.0)
            await decided(b)
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                futs = [b.submit(key(i), ARGS) for i in range(5)]
                await asyncio.sleep(0.05)  # the call is out, its reply will not come
                started = time.monotonic()
                await b.close()  # the batcher alone: its link stays open, as it is shared
                results = await asyncio.gather(*(f for f in futs if f is not None))
                assert results == [None] * 5
                assert time.monotonic() - started < 1.0  # not the 5 s timeout
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
                b.links.close()
    finally:
        server.stop()


# When its connection dies, coredis drops anyio memory streams without closing them
# (reported when they are garbage collected); collect them here, inside this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_killed_redis_fails_fast_then_recovers(transport: str) -> None:
    server = RedisServer()
    try:
        client = coredis.Redis.from_url(server.url, connect_timeout=0.5, stream_timeout=0.5)
        async with entered(client):
            b = batcher(client, server.url, transport, timeout=0.3, retry_interval=0.2)
            fut = b.submit(key(1), ARGS)
            assert fut is not None and await fut is not None
            server.kill()
            t0 = time.monotonic()
            fut = b.submit(key(1), ARGS)
            assert fut is not None and await fut is None
            assert time.monotonic() - t0 < 0.3 + 0.5
            server.start()
            await asyncio.sleep(0.3)
            ok = None
            for _ in range(20):  # the client reconnects on its own
                fut = b.submit(key(1), ARGS)
                ok = await fut if fut is not None else None
                if ok is not None:
                    break
                await asyncio.sleep(0.2)
            assert ok is not None and ok.allowed
            await close(b)
    finally:
        server.stop()
    del client, b
    gc.collect()


def test_hash_slot() -> None:
    # Known values from the Redis Cluster specification's CRC16 test vector.
    assert hash_slot("123456789") == 0x31C3 % 16384
    assert hash_slot("{user1000}.following") == hash_slot("{user1000}.followers")


def test_replies_of_a_redis_that_cannot_serve_yet_are_outages() -> None:
    # A restarted Redis loading its data, a long script, a cluster or primary down: back
    # off for retry_interval like an unreachable Redis, never one error log per batch.
    for reply in ("LOADING Redis is loading the dataset in memory", "BUSY Redis is busy running a script",
                  "CLUSTERDOWN The cluster is down", "TRYAGAIN Multiple keys request during rehashing",
                  "MASTERDOWN Link with MASTER is down"):
        assert is_outage(ReplyError(reply)), reply
    assert not is_outage(ReplyError("ERR Error running script"))
    assert is_outage(LinkDown("lost"))


async def test_wire_keys_stay_exact_and_bounded(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batcher's cache of encoded keys never changes what is sent, and stays bounded."""
    from hotpath.redis import batcher as batcher_module

    monkeypatch.setattr(batcher_module, "WIRE_KEYS_KEPT", 8)
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        b = batcher(client, redis_server.url, "link")
        try:
            for round_ in range(3):  # later rounds hit, miss and clear the cache
                futs = [b.submit([f"t:v1:rl:{{wire:{i}}}:{LIMIT.suffix}"], ARGS) for i in range(20)]
                decisions = [await f for f in futs if f is not None]
                assert len(decisions) == 20
                assert all(d is not None and d.allowed and d.remaining == 999 - round_ for d in decisions)
                assert len(b._wire_keys) <= 8
        finally:
            await close(b)
