"""The Redis tier's scripts against a real redis-server: TTLs, hash tags, key versioning."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import coredis
import pytest

from plugins.cache.backends import RedisTier
from tests.support.processes import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


@contextlib.asynccontextmanager
async def connected(server: RedisServer) -> AsyncIterator[RedisTier]:
    # Entered and left in the test's own task: coredis binds its pool to the entering task.
    client: Any = coredis.Redis.from_url(server.url, stream_timeout=2, connect_timeout=2)
    async with client:
        await client.flushall()
        yield RedisTier(client, "gh:v7:cache")


async def test_store_and_lookup_without_vary(server: RedisServer) -> None:
    async with connected(server) as tier:
        assert await tier.lookup("abc") == (None, None)
        await tier.store("abc", "", "_", b"blob", 5000)
        assert await tier.lookup("abc") == ("", b"blob")
        keys = sorted(server.cli("--scan").split())
        assert keys == ["gh:v7:cache:{abc}:e:_", "gh:v7:cache:{abc}:s"]
        for k in keys:
            assert 0 < int(server.cli("pttl", k)) <= 5000


async def test_vary_spec_outlives_its_variants(server: RedisServer) -> None:
    async with connected(server) as tier:
        await tier.store("v", "accept", "en", b"EN", 9000)
        await tier.store("v", "accept", "fr", b"FR", 2000)
        assert await tier.lookup("v") == ("accept", None)
        assert await tier.get_variant("v", "fr") == b"FR"
        assert int(server.cli("pttl", "gh:v7:cache:{v}:s")) > 2000


async def test_invalidation_records_are_stamped_by_redis_and_polled(server: RedisServer) -> None:
    async with connected(server) as tier:
        before = time.time()
        at = await tier.invalidate('["r","/a"]', 60_000, 100, '[null,""]')
        assert abs(at - before) < 5
        polled = await tier.poll("0")
        assert polled.records == {'["r","/a"]': at}
        assert abs(polled.now - time.time()) < 5
        unchanged = await tier.poll(polled.version)
        assert unchanged.records is None
        assert 0 < int(server.cli("pttl", "gh:v7:cache:{inv}:t")) <= 60_000


async def test_records_beyond_the_bound_collapse(server: RedisServer) -> None:
    async with connected(server) as tier:
        for i in range(3):
            await tier.invalidate(f'["r","/{i}"]', 60_000, 2, '[null,""]')
        polled = await tier.poll("0")
        assert polled.records is not None and list(polled.records) == ['[null,""]']
