"""A full request through the ASGI app (``hotpath.app.build_app``) against a loopback upstream.

This is the whole per-request path of one worker minus Granian's HTTP parsing: path
normalization, routing, the plugin chain, header preparation, the pooled pyreqwest
upstream call to an in-process upstream on the same event loop, and the response relay.
``bench_event_loop_baseline`` measures what driving a coroutine from the benchmark costs,
to subtract from the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from bench.support import routes
from bench.support.asgi import http_scope, request
from bench.support.fixed_upstream import BODY, FixedUpstream
from bench.support.typing import Benchmark
from hotpath.app import GatewayApplication, build_app

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="asgi-app")

HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"application/json"),
    (b"x-correlation-id", b"bench-1"),
]


@pytest.fixture(scope="module")
def app(loop: asyncio.AbstractEventLoop, fixed_upstream: FixedUpstream) -> Iterator[GatewayApplication]:
    config: dict[str, Any] = routes.route_table_config(fixed_upstream.url)
    application = build_app(routes.load(config))
    lifespan: Any = application  # BlackSheep's start/stop are untyped
    loop.run_until_complete(lifespan.start())
    yield application
    loop.run_until_complete(lifespan.stop())


def bench_event_loop_baseline(benchmark: Benchmark, loop: asyncio.AbstractEventLoop) -> None:
    async def nothing() -> int:
        return 1

    assert benchmark(lambda: loop.run_until_complete(nothing())) == 1


def bench_proxied_request(benchmark: Benchmark, loop: Loop, app: GatewayApplication) -> None:
    scope = http_scope("GET", b"/api/v1/orders/8f14e45f", HEADERS)
    out = benchmark(lambda: loop.run_until_complete(request(app, scope)))
    assert out.status == 200
    assert out.body == BODY
    assert (b"x-correlation-id", b"bench-1") in out.headers


def bench_gateway_error(benchmark: Benchmark, loop: Loop, app: GatewayApplication) -> None:
    """A request the gateway answers itself (400 for an unsafe path): no upstream call."""
    scope = http_scope("GET", b"/api/../../etc/passwd", HEADERS)
    out = benchmark(lambda: loop.run_until_complete(request(app, scope)))
    assert out.status == 400
    assert b'"code":"BAD_REQUEST"' in out.body
