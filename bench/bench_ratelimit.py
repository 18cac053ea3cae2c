"""Rate-limit decisions (plugins/rate_limit): the in-process backend, and the Redis batcher
against a real redis-server, alone and with 64 concurrent decisions coalesced into one
script call (what a loaded worker sends per event-loop tick). The Redis cases run over the
gateway's lean link, and through coredis (the path a Cluster call takes after a redirect).

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
from hotpath.redis.config import RedisConfig
from hotpath.redis.link import Links, RespLink
from hotpath.redis.state import SharedState
from plugins.rate_limit.backends.memory import MemoryStore
from plugins.rate_limit.backends.redis import DecisionBatcher
from plugins.rate_limit.config import PolicyConfig, RateLimitSettings, TierConfig
from plugins.rate_limit.limits import Decision
from plugins.rate_limit.policy import CompiledPolicy, caller_id, compile_policies
from tests.support.processes import RedisServer

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="rate-limit")

BATCH = 64
TIER = TierConfig(per_second=1_000_000, per_minute=60_000_000, burst=1_000_000)
SETTINGS = RateLimitSettings(policies={"bench": PolicyConfig(key="user", tiers={"pro": TIER, "free": TIER,
                                                                                 "anonymous": TIER})})


POLICY: CompiledPolicy = compile_policies(SETTINGS, "gh:v1:rl-bench", 1)["bench"]


def _keys(user: int) -> tuple[list[str], tuple[int, ...]]:
    plan = POLICY.tiers["pro"]
    return POLICY.keys(caller_id("user", f"user-{user}"), plan), (1, *plan.params)


class NoMap(Links):
    """No node known for any slot: every call is carried by coredis."""

    def for_slot(self, slot: int) -> RespLink | None:
        return None


@pytest.fixture(scope="module", params=["link", "coredis"])
def batcher(request: pytest.FixtureRequest, loop: Loop, redis_server: RedisServer) -> Iterator[DecisionBatcher]:
    """The batcher over the gateway's lean link, and through coredis for comparison."""
    state = SharedState("redis", RedisConfig(url=redis_server.url, command_timeout=1.0))
    owner = Lifespan(loop, state, stop="close")
    owner.start()
    assert state.links is not None
    link = RespLink.from_url(redis_server.url, connect_timeout=1.0)
    links = Links(link) if request.param == "link" else NoMap(link)
    b = DecisionBatcher(links, client=state.redis, timeout=1.0)
    loop.run_until_complete(b.start())
    yield b
    loop.run_until_complete(b.close())
    links.close()
    owner.stop()


def bench_memory_decision(benchmark: Benchmark) -> None:
    store = MemoryStore()
    keys, _ = _keys(1)
    plan = POLICY.tiers["pro"]
    decision = benchmark(store.decide, keys, plan.limits, 1)
    assert decision.allowed


def bench_redis_single_decision(benchmark: Benchmark, loop: Loop, batcher: DecisionBatcher) -> None:
    keys, args = _keys(1)

    async def one() -> Decision | None:
        fut = batcher.submit(keys, args)
        assert fut is not None, "Redis is marked down"
        return await fut

    decision = benchmark(lambda: loop.run_until_complete(one()))
    assert decision is not None and decision.allowed


def bench_redis_coalesced_64(
    benchmark: Benchmark, loop: Loop, batcher: DecisionBatcher, redis_server: RedisServer
) -> None:
    """One round = 64 decisions for 64 users submitted in the same tick."""
    work = [_keys(u) for u in range(BATCH)]

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
