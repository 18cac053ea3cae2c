"""The telemetry a request pays for (observability/gateway_telemetry.py), through the
gateway's real ``Telemetry``: request started, one upstream attempt, request finished.

Built by ``controlplane.worker.build_app`` from the harness's feature sets, started with its
lifespan, so the access log's writer and the metrics publisher run as in a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from time import perf_counter
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bench.harness.scenarios import ROUTE, Features
from bench.support.fixed_upstream import FixedUpstream
from bench.support.fixture_types import Benchmark
from bench.support.gateway import build, scenario_context
from bench.support.lifespan import Lifespan
from hotpath.context import RequestContext
from hotpath.router import Route

Loop = asyncio.AbstractEventLoop
pytestmark = pytest.mark.benchmark(group="metrics")

VARIANTS = {
    "off": Features(),
    "metrics": Features(metrics=True),
    "metrics+access-log": Features(metrics=True, access_log=True),
    # Tracing on, no root sampled: the cost every unsampled request pays (a random draw,
    # trace id and an upstream traceparent, never an SDK span).
    "metrics+access-log+tracing-0": Features(metrics=True, access_log=True, tracing=0.0),
}
SCOPE: dict[str, Any] = {"type": "http", "client": ("127.0.0.1", 50000), "scheme": "http", "method": "GET",
                         "query_string": b""}


def _requests_counted() -> float:
    value = REGISTRY.get_sample_value("gatehouse_requests_total", {"route": ROUTE, "method": "GET", "status": "200"})
    return value or 0.0


@pytest.fixture(params=list(VARIANTS))
def telemetry_and_route(
    request: pytest.FixtureRequest, loop: Loop, fixed_upstream: FixedUpstream
) -> Iterator[tuple[str, Any, Route]]:
    with scenario_context(fixed_upstream.url, None) as ctx:
        app = build(VARIANTS[request.param], ctx)
        lifespan = Lifespan(loop, app)
        lifespan.start()
        try:
            yield request.param, app.runtime.telemetry, app.gateway.table.routes[0]
        finally:
            lifespan.stop()


def bench_request_telemetry(benchmark: Benchmark, telemetry_and_route: tuple[str, Any, Route]) -> None:
    variant, telemetry, route = telemetry_and_route

    def one_request() -> None:
        ctx = RequestContext(SCOPE, None, [], peer="127.0.0.1", client_ip="127.0.0.1", request_id="rid-1",
                             correlation_id=None, started=perf_counter())
        ctx.path = "/api/orders/1"
        ctx.route = route.info
        telemetry.request_started(ctx)
        token, _ = telemetry.upstream_started(ctx, 0)
        ctx.upstream_ms = 0.4
        telemetry.upstream_finished(ctx, token, 200, None)
        ctx.status = 200
        ctx.bytes_out = 37
        telemetry.request_finished(ctx)

    before = _requests_counted()
    benchmark(one_request)
    publish = getattr(telemetry, "publish_metrics", None)
    if publish is not None:
        publish()
    counted = _requests_counted() - before
    if variant == "off":
        assert counted == 0
    else:
        assert counted >= 1  # every round was counted (and published)
