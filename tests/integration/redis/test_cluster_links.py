"""The batcher on a real 3-master Redis Cluster: slot calls over lean links, redirects via coredis."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from hotpath.redis.cluster import ClusterLinks
from hotpath.redis.config import RedisConfig
from hotpath.redis.link import RespLink
from hotpath.redis.resp import hash_slot
from hotpath.redis.state import SharedState
from plugins.rate_limit.backends.redis import DecisionBatcher
from plugins.rate_limit.config import SlidingWindow
from plugins.rate_limit.limits import compile_limit
from tests.support.coredis_client import entered
from tests.support.processes import RedisCluster, free_port

# coredis's Cluster client leaves anyio memory streams unclosed when it exits, even after
# a plain PING (reported when they are garbage collected): not this code's, so ignored here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

LIMIT = compile_limit(SlidingWindow(limit=3, window=60), "w")
ARGS = (1, 1, *LIMIT.params())


def keys(caller: int) -> list[str]:
    return [f"t:v1:rl:{{cl:{caller}}}:{LIMIT.suffix}"]


@pytest.fixture(autouse=True)
def collect_coredis_garbage() -> Iterator[None]:
    """Set up before the test's event loop, so torn down after it closed: the leaked streams
    are collected here, inside this module's warning filters, not during a later test."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(3)
    yield c
    c.stop()


async def _decide_all(b: DecisionBatcher, callers: range, times: int) -> list[bool]:
    futs = [b.submit(keys(c), ARGS) for c in callers for _ in range(times)]
    results = await asyncio.gather(*(f for f in futs if f is not None))
    assert len(results) == len(futs) and all(r is not None for r in results)
    return [r.allowed for r in results if r is not None]


async def test_slot_calls_go_over_links_and_stay_exact(cluster: RedisCluster) -> None:
    state = SharedState("redis", RedisConfig(url=cluster.url, command_timeout=2.0))
    links = state.links
    assert isinstance(links, ClusterLinks)
    async with entered(state.redis):
        b = DecisionBatcher(links, client=state.redis, timeout=2.0)
        await b.start()
        callers = range(30)  # spread over the three masters' slots
        allowed = await _decide_all(b, callers, 5)
        # Exact per caller: 3 of 5 admitted, in submission order.
        assert allowed == [True, True, True, False, False] * len(callers)
        assert b.link_calls > 0 and b.calls >= 1
        masters = {(link.host, link.port) for link in links._links.values()}
        assert len(masters) == 3
        await b.close()
        links.close()


async def test_a_stale_map_is_corrected_through_coredis(cluster: RedisCluster) -> None:
    state = SharedState("redis", RedisConfig(url=cluster.url, command_timeout=2.0))
    links = state.links
    assert isinstance(links, ClusterLinks)
    async with entered(state.redis):
        real = links.for_slot(hash_slot(keys(1000)[0]))
        assert real is not None
        wrong = next(RespLink("127.0.0.1", n.port, connect_timeout=1.0) for n in cluster.nodes if n.port != real.port)

        class StaleMap(ClusterLinks):
            def for_slot(self, slot: int) -> RespLink | None:
                return wrong  # as after a resharding this worker has not seen yet

        stale = StaleMap(state.redis, connect_timeout=1.0)
        b = DecisionBatcher(stale, client=state.redis, timeout=2.0)
        await b.start()
        allowed = await _decide_all(b, range(1000, 1001), 4)
        assert allowed == [True, True, True, False]  # MOVED: the node ran nothing, coredis did
        assert b.link_calls >= 1 and b.redirected >= 1
        await b.close()
        wrong.close()
        links.close()


async def test_an_unreachable_primary_is_left_to_coredis(cluster: RedisCluster) -> None:
    # The map names a node that no longer answers (failed over, gone): coredis learns the
    # topology only from its own failures, so the call goes through it and is decided.
    state = SharedState("redis", RedisConfig(url=cluster.url, command_timeout=2.0))
    async with entered(state.redis):
        gone = RespLink("127.0.0.1", free_port(), connect_timeout=0.5)

        class DeadPrimary(ClusterLinks):
            def for_slot(self, slot: int) -> RespLink | None:
                return gone

        dead = DeadPrimary(state.redis, connect_timeout=0.5)
        b = DecisionBatcher(dead, client=state.redis, timeout=2.0)
        await b.start()
        allowed = await _decide_all(b, range(2000, 2003), 4)
        assert allowed == [True, True, True, False] * 3
        assert b.available  # no outage: every decision was made in Redis
        await b.close()
        gone.close()
        assert state.links is not None
        state.links.close()
