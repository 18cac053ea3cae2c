"""The breaker's per-attempt cost on the hot path (hotpath/resilience): ``admit`` and
``record`` on a closed breaker, for the Redis-shared breaker (a local mirror; outcomes
are batched to Redis in the background by the worker's hub) and the in-process one.

One round is 1,000 admit + record pairs on the event loop, followed by one loop turn so
the hub can take its batch: divide by 1,000 for the cost per upstream attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.harness.scenarios import SERVICE, Features
from bench.support.fixed_upstream import FixedUpstream
from bench.support.fixture_types import Benchmark
from bench.support.gateway import build, scenario_context
from bench.support.lifespan import Lifespan
from hotpath.resilience.config import BreakerConfig
from hotpath.resilience.contracts import Breaker, Outcome
from hotpath.resilience.local import LocalBreaker
from hotpath.resilience.policy import BreakerPolicy
from hotpath.upstream.config import ServiceConfig
from tests.support.processes import RedisServer

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="breaker")

PAIRS = 1000


async def _attempts(breaker: Breaker) -> int:
    for _ in range(PAIRS):
        permit = breaker.admit()
        breaker.record(permit, Outcome.SUCCESS, 0.001)
    await asyncio.sleep(0)
    return PAIRS


@pytest.fixture(scope="module")
def shared_breaker(loop: Loop, fixed_upstream: FixedUpstream, redis_server: RedisServer) -> Iterator[Breaker]:
    with scenario_context(fixed_upstream.url, redis_server.url) as ctx:
        app = build(Features(breaker=True), ctx)
        lifespan = Lifespan(loop, app)
        lifespan.start()
        try:
            services = {r.service.name: r.service for r in app.gateway.table.routes}
            yield services[SERVICE].breaker
        finally:
            lifespan.stop()


def bench_shared_breaker_x1000(benchmark: Benchmark, loop: Loop, shared_breaker: Breaker) -> None:
    assert type(shared_breaker).__name__ == "SharedBreaker"
    assert benchmark(lambda: loop.run_until_complete(_attempts(shared_breaker))) == PAIRS
    assert shared_breaker.state_name() == "closed"
    benchmark.extra_info["attempts_per_round"] = PAIRS


def bench_local_breaker_x1000(benchmark: Benchmark, loop: Loop) -> None:
    config = ServiceConfig(urls=("http://127.0.0.1:9",))
    breaker = LocalBreaker(
        "bench", BreakerPolicy(BreakerConfig(), default_probe_timeout=config.timeouts.total + 1.0)
    )
    assert benchmark(lambda: loop.run_until_complete(_attempts(breaker))) == PAIRS
    assert breaker.state_name() == "closed"
    benchmark.extra_info["attempts_per_round"] = PAIRS
