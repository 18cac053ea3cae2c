"""The shared breaker against a real redis-server, several workers simulated in process.

Each ``Worker`` has its own coredis client and ``BreakerHub``, as a Granian worker does, so
the script, the pub/sub propagation, probe exactness and the fallback are exercised for
real and quickly. The gateway-level tests are in test_breaker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import coredis
import msgspec
import pytest

from hotpath import metrics
from hotpath.audit import AuditEvent, AuditType
from hotpath.errors import GatewayError
from hotpath.resilience.config import BreakerConfig
from hotpath.resilience.contracts import Outcome
from hotpath.resilience.hub import BreakerHub
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.shared import SharedBreaker
from tests.support.processes import RedisServer

pytestmark = [
    pytest.mark.integration,
    # See collect_coredis_garbage below.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

_names = itertools.count(1)


class Sink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


class Worker:
    def __init__(self, url: str, sink: Sink) -> None:
        self.redis = coredis.Redis.from_url(url, connect_timeout=0.5, stream_timeout=0.5)
        self.hub = BreakerHub(self.redis, prefix="test:v1:cb", audit=sink, command_timeout=0.3)
        self._stack: Any = None

    async def start(self) -> None:
        await self.redis.__aenter__()
        await self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()
        await self.redis.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def sink() -> Sink:
    return Sink()


# coredis 6 leaves the anyio streams of a connection that never connected unclosed (a
# ResourceWarning when collected); while Redis is down that happens on every reconnect try,
# and the streams can outlive the test that made them. Not this code's: ignored in this
# module, and collected after each test so they never surface in a later one.


@pytest.fixture(autouse=True)
def collect_coredis_garbage() -> Iterator[None]:
    """Set up before the test's event loop, so torn down after it closed: streams coredis
    leaked are collected here, under the test's own warning filters, rather than during
    whichever later test happens to trigger a collection."""
    yield
    gc.collect()


@contextlib.asynccontextmanager
async def shared(url: str, sink: Sink, n: int = 3, **settings: Any) -> AsyncIterator[tuple[str, list[SharedBreaker],
                                                                                           list[Worker]]]:
    """One new service's breaker in ``n`` started workers. Clients are entered and left in
    the test's own task, as coredis requires."""
    name = f"svc{next(_names)}"
    config = msgspec.convert({"flush_interval": 0.01, **settings}, BreakerConfig)
    workers = [Worker(url, sink) for _ in range(n)]
    breakers = [w.hub.add(name, BreakerPolicy(config, default_probe_timeout=5)) for w in workers]
    started: list[Worker] = []
    try:
        for w in workers:
            await w.start()
            started.append(w)
        # Stopping a worker whose pub/sub connection is still being made leaks coredis
        # streams (a ResourceWarning); wait until every listener is connected.
        await eventually(lambda: all(w.hub.subscribed for w in workers))
        yield name, breakers, workers
    finally:
        for w in reversed(started):
            await w.stop()


def call(b: SharedBreaker, outcome: Outcome) -> None:
    b.record(b.admit(), outcome, 0.001)


async def eventually(check: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_failures_in_one_worker_open_every_worker_quickly(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=5, failure_rate=50, open_duration=30) as (_, bs, _w):
        a, b, c = bs
        for _ in range(5):
            call(a, Outcome.FAILURE)
        started = asyncio.get_running_loop().time()
        await eventually(lambda: b.state_name() == c.state_name() == "open")
        assert asyncio.get_running_loop().time() - started < 1.0
        with pytest.raises(GatewayError) as info:
            c.admit()
        assert info.value.retry_after is not None and 28 <= info.value.retry_after <= 30
        # The transition is audited once, by the worker whose flush performed it.
        await asyncio.sleep(0.1)
        assert [e.type for e in sink.events] == [AuditType.BREAKER_OPENED]
        assert sink.events[0].details is not None and sink.events[0].details["scope"] == "cluster"


async def test_resilience4j_sequences_across_workers(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=5, failure_rate=50) as (_, (a, b, _c), workers):
        for _ in range(3):
            call(a, Outcome.SUCCESS)
        call(b, Outcome.FAILURE)
        call(b, Outcome.FAILURE)
        await workers[0].hub.flush()
        await workers[1].hub.flush()
        assert a.state_name() == b.state_name() == "closed"  # 40%
        call(a, Outcome.FAILURE)
        await workers[0].hub.flush()
        assert a.state_name() == "open"  # 3 of 6: 50%

    async with shared(redis.url, sink, minimum_calls=5, failure_rate=50) as (_, (a, b, _c), workers):
        for outcome in "FFFSS":
            call(a if outcome == "F" else b, Outcome.FAILURE if outcome == "F" else Outcome.SUCCESS)
        await workers[0].hub.flush()
        assert a.state_name() == "closed"  # 3 calls seen so far
        await workers[1].hub.flush()
        assert b.state_name() == "open"  # 60%

    async with shared(redis.url, sink, minimum_calls=10, failure_rate=50) as (_, (d, e, _f), workers):
        for i in range(9):
            call(d if i % 2 else e, Outcome.FAILURE)
        await workers[0].hub.flush()
        await workers[1].hub.flush()
        assert d.state_name() == e.state_name() == "closed"  # 9 failures, minimum 10
        call(d, Outcome.FAILURE)
        await workers[0].hub.flush()
        assert d.state_name() == "open"


async def test_half_open_admits_exactly_the_probes_across_workers(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=2, failure_rate=50, open_duration=0.3,
                      half_open_probes=3, successes_to_close=3) as (_, breakers, _w):
        call(breakers[0], Outcome.FAILURE)
        call(breakers[0], Outcome.FAILURE)
        await eventually(lambda: all(b.state_name() == "open" for b in breakers))
        await asyncio.sleep(0.35)

        async def attempt(b: SharedBreaker) -> Any:
            try:
                permit = b.admit()
                await permit.ready()
            except GatewayError:
                return None
            return permit

        permits = await asyncio.gather(*(attempt(breakers[i % 3]) for i in range(50)))
        admitted = [(i % 3, p) for i, p in enumerate(permits) if p is not None]
        assert len(admitted) == 3
        for i, p in admitted[:2]:
            breakers[i].record(p, Outcome.SUCCESS, 0.001)
        await asyncio.sleep(0.1)
        assert all(b.state_name() == "half_open" for b in breakers)
        i, p = admitted[2]
        breakers[i].record(p, Outcome.SUCCESS, 0.001)
        await eventually(lambda: all(b.state_name() == "closed" for b in breakers))


async def test_one_failed_probe_reopens_and_a_hanging_probe_expires(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=2, failure_rate=50, open_duration=0.3,
                      half_open_probes=1, probe_timeout=0.5) as (_, (a, b, _c), _w):
        call(a, Outcome.FAILURE)
        call(a, Outcome.FAILURE)
        await eventually(lambda: b.state_name() == "open")
        await asyncio.sleep(0.35)
        probe = a.admit()
        await probe.ready()
        a.record(probe, Outcome.FAILURE, 0.001)
        await eventually(lambda: a.state_name() == b.state_name() == "open")

        await asyncio.sleep(0.35)
        hung = b.admit()
        await hung.ready()  # never reported
        with pytest.raises(GatewayError):
            await a.admit().ready()
        await asyncio.sleep(0.6)  # the lease expires: the next caller's probe request reopens it
        with pytest.raises(GatewayError):
            await a.admit().ready()
        await eventually(lambda: a.state_name() == "open" and b.state_name() == "open")
        await asyncio.sleep(0.35)
        probe = a.admit()
        await probe.ready()
        a.record(probe, Outcome.SUCCESS, 0.001)
        await eventually(lambda: a.state_name() == b.state_name() == "closed")
        b.record(hung, Outcome.SUCCESS, 0.001)  # answering at last changes nothing
        await asyncio.sleep(0.05)
        assert a.state_name() == "closed"


async def test_reset_reaches_every_worker(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=1, failure_rate=50, open_duration=60) as (_, (a, b, c), _w):
        call(a, Outcome.FAILURE)
        await eventually(lambda: c.state_name() == "open")
        await b.reset()
        await eventually(lambda: a.state_name() == c.state_name() == "closed")
        assert [e.type for e in sink.events] == [AuditType.BREAKER_OPENED, AuditType.BREAKER_CLOSED]


async def test_falls_back_to_a_local_breaker_while_redis_is_down(sink: Sink) -> None:
    server = RedisServer()
    try:
        async with shared(server.url, sink, n=1, minimum_calls=4, failure_rate=50, open_duration=0.5) as (
            name, (b,), _w
        ):
            fallback = metrics.BREAKER_LOCAL_FALLBACK.labels(name)
            before = fallback._value.get()
            server.kill()
            call(b, Outcome.SUCCESS)
            await eventually(lambda: b.describe()["backend"] == "local_fallback")
            for _ in range(3):
                assert b.state_name() == "closed"
                call(b, Outcome.FAILURE)
            assert b.state_name() == "open"  # S,F,F,F: decided in process, same rules
            with pytest.raises(GatewayError):
                b.admit()
            assert fallback._value.get() > before
            with pytest.raises(ConnectionError):  # an operator must learn it was not cluster-wide
                await b.reset()
            assert b.state_name() == "closed"
            server.start()
            await eventually(lambda: b.describe()["backend"] == "redis", timeout=5)
            assert b.state_name() == "closed"  # Redis never saw those failures
    finally:
        server.stop()


async def test_a_probe_whose_caller_leaves_gives_its_lease_back(redis: RedisServer, sink: Sink) -> None:
    async with shared(redis.url, sink, minimum_calls=1, failure_rate=50, open_duration=0.2,
                      half_open_probes=1) as (_, (a, b, _c), _w):
        call(a, Outcome.FAILURE)
        await eventually(lambda: b.state_name() == "open")
        await asyncio.sleep(0.25)
        waiting = asyncio.create_task(a.admit().ready())
        for _ in range(3):
            await asyncio.sleep(0)  # the lease request is on its way to Redis
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The single slot comes back at once (a probe lease would otherwise last 5 s).
        await asyncio.sleep(0.1)
        probe = b.admit()
        await probe.ready()
        b.record(probe, Outcome.SUCCESS, 0.001)
        await eventually(lambda: a.state_name() == "closed")
