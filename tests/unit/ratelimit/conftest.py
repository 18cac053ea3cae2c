"""Backends under test: the in-process one on an injected clock, and real Redis.

``Harness`` hides only how time passes: the memory backend's clock jumps, Redis waits for
real (its scripts take time from Redis TIME). Scenarios therefore use windows of a second
or two and assert with margins that a loaded machine cannot break.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest

from hotpath.ratelimit.limits import CompiledLimit, Decision
from hotpath.ratelimit.memory import MemoryBackend
from hotpath.ratelimit.redis_backend import RedisBatcher
from hotpath.state.resp import RespLink
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
        self.backend = MemoryBackend(self.clock)

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

    def __init__(self, client: Any, link: RespLink | None = None) -> None:
        self.client = client
        self.batcher = RedisBatcher(client, cluster=False, timeout=2.0, link=link)

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


@contextlib.asynccontextmanager
async def entered(client: Any) -> AsyncIterator[Any]:
    """Enter a coredis client in a task of its own, as the gateway's lifespan task does.

    coredis binds its pool to the task that enters it, and pytest-asyncio sets up and tears
    down a fixture in different tasks; a holder task keeps both ends in one task.
    """
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with client:
                ready.set_result(None)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(hold())
    await ready
    try:
        yield client
    finally:
        done.set()
        with contextlib.suppress(Exception):
            await task


# "redis" sends script calls through coredis (as on a Cluster), "redis-link" through the
# lean link standalone Redis uses.
@pytest.fixture(params=["memory", "redis", "redis-link"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = coredis.Redis.from_url(server.url, connect_timeout=1.0, stream_timeout=2.0)
    async with entered(client):
        await client.flushall()
        link = RespLink.from_url(server.url, connect_timeout=1.0) if request.param == "redis-link" else None
        h = RedisHarness(client, link)
        yield h
        await h.batcher.close()
        if link is not None:
            link.close()
