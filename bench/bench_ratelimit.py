"""Rate-limit decisions (hotpath/ratelimit): the in-process backend, and the Redis batcher
against a real redis-server, alone and with 64 concurrent decisions coalesced into one
script call (what a loaded worker sends per event-loop tick). The Redis cases run over the
gateway's lean link and over coredis, the transport it replaced.

Each decision covers a tier of two limits (a token bucket with burst and a per-minute
sliding window), as the shipped tiers do. Limits are far above what the rounds consume,
so every decision is a full admission. The coalesced case also records what the script
costs inside Redis per decision (``INFO commandstats``), in ``extra_info``: Redis shares
the gateway's cores, so its CPU counts as much as the worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.harness.load import RedisInfo
from bench.support.fixture_types import Benchmark
from bench.support.lifespan import Lifespan
from hotpath.config.schema import RedisConfig
from hotpath.ratelimit.config import PolicyConfig, RateLimitSettings, TierConfig
from hotpath.ratelimit.limiter import Limiter
from hotpath.ratelimit.limits import Decision
from hotpath.ratelimit.policy import caller_id
from hotpath.state.shared import SharedState
from tests.support.processes import RedisServer

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="rate-limit")

BATCH = 64
TIER = TierConfig(per_second=1_000_000, per_minute=60_000_000, burst=1_000_000)
SETTINGS = RateLimitSettings(policies={"bench": PolicyConfig(key="user", tiers={"pro": TIER, "free": TIER,
                                                                                 "anonymous": TIER})})


def _keys(limiter: Limiter, user: int) -> tuple[list[str], tuple[int, ...]]:
    policy = limiter.policies["bench"]
    plan = policy.tiers["pro"]
    return policy.keys(caller_id("user", f"user-{user}"), plan), (1, *plan.params)


@pytest.fixture(scope="module", params=["link", "coredis"])
def redis_limiter(request: pytest.FixtureRequest, loop: Loop, redis_server: RedisServer) -> Iterator[Limiter]:
    """The batcher over the gateway's lean link, and over coredis for comparison."""
    state = SharedState("redis", RedisConfig(url=redis_server.url, command_timeout=1.0))
    owner = Lifespan(loop, state, stop="close")
    owner.start()
    link = state.link if request.param == "link" else None
    assert request.param != "link" or link is not None
    limiter = Limiter(SETTINGS, kind="redis", key_base=state.keys.feature("rl-bench"), workers=1,
                      redis=state.redis, link=link, timeout=1.0)
    loop.run_until_complete(limiter.start())
    yield limiter
    loop.run_until_complete(limiter.close())
    owner.stop()


def bench_memory_decision(benchmark: Benchmark) -> None:
    limiter = Limiter(SETTINGS, kind="memory", key_base="gh:v1:rl-bench", workers=1)
    keys, _ = _keys(limiter, 1)
    plan = limiter.policies["bench"].tiers["pro"]
    decision = benchmark(limiter.decide_local, keys, plan.limits, 1)
    assert decision.allowed


def bench_redis_single_decision(benchmark: Benchmark, loop: Loop, redis_limiter: Limiter) -> None:
    batcher = redis_limiter.batcher
    assert batcher is not None
    keys, args = _keys(redis_limiter, 1)

    async def one() -> Decision | None:
        fut = batcher.submit(keys, args)
        assert fut is not None, "Redis is marked down"
        return await fut

    decision = benchmark(lambda: loop.run_until_complete(one()))
    assert decision is not None and decision.allowed


def bench_redis_coalesced_64(
    benchmark: Benchmark, loop: Loop, redis_limiter: Limiter, redis_server: RedisServer
) -> None:
    """One round = 64 decisions for 64 users submitted in the same tick."""
    batcher = redis_limiter.batcher
    assert batcher is not None
    work = [_keys(redis_limiter, u) for u in range(BATCH)]

    async def batch() -> list[Decision | None]:
        futures = [batcher.submit(keys, args) for keys, args in work]
        return list(await asyncio.gather(*(f for f in futures if f is not None)))

    calls, decisions = batcher.calls, batcher.decisions
    info = RedisInfo(redis_server.port)
    try:
        usec = info.snapshot()["script_us"]
        out = benchmark(lambda: loop.run_until_complete(batch()))
        script_us = info.snapshot()["script_us"] - usec
    finally:
        info.close()
    assert len(out) == BATCH and all(d is not None and d.allowed for d in out)
    sent, carried = batcher.calls - calls, batcher.decisions - decisions
    assert carried == sent * BATCH, f"{carried} decisions in {sent} calls: not coalesced"
    benchmark.extra_info["decisions_per_round"] = BATCH
    benchmark.extra_info["redis_script_us_per_decision"] = round(script_us / carried, 2)
