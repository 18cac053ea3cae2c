"""Backends under test: the in-process one on an injected clock, and real Redis.

``Harness`` hides only how time passes: the memory backend's clock jumps, Redis waits for
real (its scripts take time from Redis TIME). Scenarios therefore use windows of a second
or two and assert with margins that a loaded machine cannot break.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest

from hotpath.redis.link import Links, RespLink
from plugins.rate_limit.backends.memory import MemoryStore
from plugins.rate_limit.backends.redis import DecisionBatcher
from plugins.rate_limit.limits import CompiledLimit, Decision
from tests.support.coredis_client import entered
from tests.support.processes import RedisServer

START_US = 1_700_000_000_000_000


class FakeClock:
    def __init__(self, now_us: int = START_US) -> None:
        self.now = now_us

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


class Harness:
    name: str
    exact_time: bool

    async def decide(self, keys: list[str], limits: tuple[CompiledLimit, ...], cost: int = 1) -> Decision:
        raise NotImplementedError

    async def decide_many(
        self, keys: list[str], limits: tuple[CompiledLimit, ...], n: int, cost: int = 1
    ) -> list[Decision]:
        return [await self.decide(keys, limits, cost) for _ in range(n)]

    async def advance(self, seconds: float) -> None:
        raise NotImplementedError

    async def align(self, period: float, offset: float) -> None:
        """Let time pass until it is ``offset`` seconds into a ``period``-long slot."""
        raise NotImplementedError

    async def ttl_ms(self, key: str) -> int:
        """Remaining lifetime of a key's state (-2 when absent)."""
        raise NotImplementedError


class MemoryHarness(Harness):
    name = "memory"
    exact_time = True

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.backend = MemoryStore(self.clock)

    async def decide(self, keys: list[str], limits: tuple[CompiledLimit, ...], cost: int = 1) -> Decision:
        return self.backend.decide(keys, limits, cost)

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def align(self, period: float, offset: float) -> None:
        p, o = round(period * 1_000_000), round(offset * 1_000_000)
        self.clock.now += (o - self.clock.now % p) % p

    async def ttl_ms(self, key: str) -> int:
        st = self.backend._state.get(key)
        if st is None or st.expires <= self.clock.now:
            return -2
        return -(-(st.expires - self.clock.now) // 1000)


class RedisHarness(Harness):
    name = "redis"
    exact_time = False

    def __init__(self, client: Any, links: Links) -> None:
        self.client = client
        self.batcher = DecisionBatcher(links, client=client, timeout=2.0)

    @staticmethod
    def _args(limits: tuple[CompiledLimit, ...], cost: int) -> tuple[int, ...]:
        flat: list[int] = [cost, len(limits)]
        for lim in limits:
            flat.extend(lim.params())
        return tuple(flat)

    async def decide(self, keys: list[str], limits: tuple[CompiledLimit, ...], cost: int = 1) -> Decision:
        fut = self.batcher.submit(keys, self._args(limits, cost))
        assert fut is not None
        result = await fut
        assert result is not None, "Redis call failed"
        return result

    async def decide_many(
        self, keys: list[str], limits: tuple[CompiledLimit, ...], n: int, cost: int = 1
    ) -> list[Decision]:
        # Concurrent: these coalesce into one script call, in submission order.
        futs = [self.batcher.submit(keys, self._args(limits, cost)) for _ in range(n)]
        results = await asyncio.gather(*(f for f in futs if f is not None))
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    async def advance(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def align(self, period: float, offset: float) -> None:
        # Redis TIME is this machine's wall clock.
        await asyncio.sleep((offset - time.time() % period) % period)

    async def ttl_ms(self, key: str) -> int:
        return int(await self.client.pttl(key))


class NoMap(Links):
    """Links that know no node for any slot: every call is carried by coredis, as a Cluster
    call is after a redirect."""

    def for_slot(self, slot: int) -> RespLink | None:
        return None


# "redis" sends script calls over the lean link; "redis-coredis" through coredis, the path
# a Cluster call takes after a redirect.
@pytest.fixture(params=["memory", "redis", "redis-coredis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = coredis.Redis.from_url(server.url, connect_timeout=1.0, stream_timeout=2.0)
    async with entered(client):
        await client.flushall()
        link = RespLink.from_url(server.url, connect_timeout=1.0)
        links = Links(link) if request.param == "redis" else NoMap(link)
        h = RedisHarness(client, links)
        yield h
        await h.batcher.close()
        links.close()
