"""Admin operations: usage lookup and resets, on Redis and in process."""

from __future__ import annotations

import coredis

from hotpath.redis.link import Links, RespLink
from plugins.rate_limit import admin
from plugins.rate_limit.backends.memory import MemoryLimits, MemoryStore
from plugins.rate_limit.backends.redis import RedisLimits
from plugins.rate_limit.config import BatchConfig, PolicyConfig, RateLimitSettings, SlidingWindow, TierConfig
from plugins.rate_limit.limiter import Limiter
from plugins.rate_limit.policy import CostPlan
from tests.integration.plugins.rate_limit.conftest import FakeClock
from tests.support.coredis_client import entered
from tests.support.processes import RedisServer

SETTINGS = RateLimitSettings(policies={
    "p": PolicyConfig(key="ip", default_tier="anonymous",
                      tiers={"anonymous": TierConfig(limits=(SlidingWindow(limit=10, window=60),))}),
})


async def consume(limiter: Limiter, ip: str, n: int) -> None:
    policy = limiter.policies["p"]
    tier = policy.default
    plan = CostPlan("p", tier, 1, False, limiter.counters[("p", tier.name)])
    keys = policy.keys(admin.caller_id("ip", ip), tier)
    for _ in range(n):
        assert (await limiter.backend.decide(keys, plan)) is not None


async def check(limiter: Limiter) -> None:
    await consume(limiter, "10.0.0.1", 3)
    await consume(limiter, "10.0.0.2", 1)
    u = await admin.usage(limiter, "p", "10.0.0.1")
    assert [(x["name"], x["limit"], x["remaining"]) for x in u["limits"]] == [("limit0", 10, 7)]
    assert 0 < u["limits"][0]["ttl_ms"] <= 61_000  # a minute plus its one-second sub-window
    assert await admin.reset_caller(limiter, "p", "10.0.0.1") == 1
    assert (await admin.usage(limiter, "p", "10.0.0.1"))["limits"][0]["remaining"] == 10
    assert (await admin.usage(limiter, "p", "10.0.0.2"))["limits"][0]["remaining"] == 9
    await consume(limiter, "10.0.0.3", 1)
    assert await admin.reset_policy(limiter, "p") == 2
    assert (await admin.usage(limiter, "p", "10.0.0.2"))["limits"][0]["remaining"] == 10


async def test_admin_on_redis(redis_server: RedisServer) -> None:
    client = coredis.Redis.from_url(redis_server.url, connect_timeout=1, stream_timeout=2)
    async with entered(client):
        await client.flushall()
        links = Links(RespLink.from_url(redis_server.url, connect_timeout=1.0))
        backend = RedisLimits(client, links, BatchConfig(), timeout=2.0, fallback=MemoryStore())
        limiter = Limiter(SETTINGS, backend, key_base="t:v1:rl", workers=2)
        await check(limiter)
        await backend.close()
        links.close()


async def test_admin_in_process() -> None:
    backend = MemoryLimits(MemoryStore(FakeClock()))
    await check(Limiter(SETTINGS, backend, key_base="t:v1:rl", workers=1))
