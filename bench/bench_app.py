"""A full request through the ASGI app (``controlplane.worker.build_app``) against a loopback upstream.

This is one worker's whole per-request path minus Granian's HTTP parsing: normalization,
routing, the plugin chain, header preparation, the pooled HTTP/1.1 call to an in-process
upstream on the same event loop, and the response relay. The feature sets are the load
harness's scenarios (bare, metrics, access log, the full chain with JWT + Redis rate
limits + shared breaker, and a cache hit), built in-process; Redis is a real
redis-server. ``bench_event_loop_baseline`` is what driving one coroutine costs here, to
subtract from the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.harness.scenarios import FULL, Features
from bench.support import routes
from bench.support.asgi import http_scope, request
from bench.support.fixed_upstream import BODY, FixedUpstream
from bench.support.fixture_types import Benchmark
from bench.support.gateway import scenario_context, serving
from bench.support.lifespan import Lifespan
from controlplane.worker import GatewayApplication, build_app
from tests.support.processes import RedisServer

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="asgi-app")

HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"application/json"),
    (b"x-correlation-id", b"bench-1"),
]

VARIANTS: dict[str, Features] = {
    "metrics": Features(metrics=True),
    "metrics+access-log": Features(metrics=True, access_log=True),
    "full-chain": FULL,
    "cache-hit": Features(cache=True),
}


@pytest.fixture(scope="module")
def table_app(loop: Loop, fixed_upstream: FixedUpstream) -> Iterator[GatewayApplication]:
    """The ~100-route table of bench_router, no plugins: the bare proxy path."""
    application = build_app(routes.load(routes.route_table_config(fixed_upstream.url)))
    lifespan = Lifespan(loop, application)
    lifespan.start()
    yield application
    lifespan.stop()


def bench_event_loop_baseline(benchmark: Benchmark, loop: Loop) -> None:
    async def nothing() -> int:
        return 1

    assert benchmark(lambda: loop.run_until_complete(nothing())) == 1


def bench_proxied_request(benchmark: Benchmark, loop: Loop, table_app: GatewayApplication) -> None:
    scope = http_scope("GET", b"/api/v1/orders/8f14e45f", HEADERS)
    out = benchmark(lambda: loop.run_until_complete(request(table_app, scope)))
    assert out.status == 200
    assert out.body == BODY
    assert (b"x-correlation-id", b"bench-1") in out.headers


def bench_gateway_error(benchmark: Benchmark, loop: Loop, table_app: GatewayApplication) -> None:
    """A request the gateway answers itself (400 for a path above the root): no upstream call."""
    scope = http_scope("GET", b"/api/../../etc/passwd", HEADERS)
    out = benchmark(lambda: loop.run_until_complete(request(table_app, scope)))
    assert out.status == 400
    assert b'"code":"BAD_REQUEST"' in out.body


@pytest.mark.parametrize("variant", list(VARIANTS))
def bench_feature_request(
    benchmark: Benchmark, loop: Loop, fixed_upstream: FixedUpstream, redis_server: RedisServer, variant: str
) -> None:
    features = VARIANTS[variant]
    with (
        scenario_context(fixed_upstream.url, redis_server.url if features.needs_redis() else None) as ctx,
        serving(loop, features, ctx, HEADERS) as (application, scope),
    ):
        out = benchmark(lambda: loop.run_until_complete(request(application, scope)))
    assert out.status == 200
    assert out.body == BODY
    names = {k for k, _ in out.headers}
    if features.rate_limit:
        assert b"x-ratelimit-remaining" in names
    if features.cache:
        assert (b"x-cache", b"HIT") in out.headers
