"""Admin operations: usage lookup and resets, on Redis and in process."""

from __future__ import annotations

import coredis

from hotpath.ratelimit import admin
from hotpath.ratelimit.config import PolicyConfig, RateLimitSettings, SlidingWindow, TierConfig
from hotpath.ratelimit.limiter import Limiter
from tests.support.processes import RedisServer
from tests.unit.ratelimit.conftest import FakeClock, entered

SETTINGS = RateLimitSettings(policies={
    "p": PolicyConfig(key="ip", default_tier="anonymous",
                      tiers={"anonymous": TierConfig(limits=(SlidingWindow(limit=10, window=60),))}),
})


async def consume(limiter: Limiter, ip: str, n: int) -> None:
    policy = limiter.policies["p"]
    plan = policy.default
    keys = policy.keys(admin.caller_id("ip", ip), plan)
    for _ in range(n):
        if limiter.batcher is not None:
            fut = limiter.batcher.submit(keys, (1, *plan.params))
            assert fut is not None and (await fut) is not None
        else:
            limiter.decide_local(keys, plan.limits, 1)


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
        limiter = Limiter(SETTINGS, kind="redis", key_base="t:v1:rl", workers=2, redis=client, timeout=2.0)
        await check(limiter)
        await limiter.close()


async def test_admin_in_process() -> None:
    await check(Limiter(SETTINGS, kind="memory", key_base="t:v1:rl", workers=1, clock=FakeClock()))
