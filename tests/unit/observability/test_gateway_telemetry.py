"""GatewayTelemetry in process: request hooks count locally, the timer and stop() publish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import REGISTRY

from hotpath.context import RequestContext, RouteInfo
from observability.config import AccessLogConfig, MetricsConfig, ObservabilityConfig, TracingConfig
from observability.gateway_telemetry import GatewayTelemetry
from tests.support.requests import make_ctx

ROUTE, SERVICE = "unit-telemetry", "unit-telemetry-svc"


def _telemetry(interval: float) -> GatewayTelemetry:
    cfg = ObservabilityConfig(
        metrics=MetricsConfig(publish_interval=interval),
        access_log=AccessLogConfig(enabled=False),
        tracing=TracingConfig(enabled=False),
    )
    return GatewayTelemetry(cfg, routes=(ROUTE,), services=(SERVICE,), env={})


def _ctx() -> RequestContext:
    ctx = make_ctx("GET", "/unit/x")
    ctx.route = RouteInfo(ROUTE, "/unit", SERVICE)
    return ctx


def _served(tele: GatewayTelemetry, ctx: RequestContext, status: int = 200) -> None:
    tele.request_started(ctx)
    token, headers = tele.upstream_started(ctx, 0)
    assert headers == []
    ctx.status = status
    ctx.upstream_ms = 1.0
    tele.upstream_finished(ctx, token, status, None)
    tele.request_finished(ctx)


def _count(status: str = "200") -> float:
    got = REGISTRY.get_sample_value("gatehouse_requests_total", {"route": ROUTE, "method": "GET", "status": status})
    return got or 0.0


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "metrics were never published"
        await asyncio.sleep(0.01)


async def test_the_timer_publishes_what_requests_counted() -> None:
    tele = _telemetry(0.05)
    before = _count()
    upstream_before = _sample("gatehouse_upstream_duration_seconds_count", service=SERVICE)
    await tele.start()
    try:
        for _ in range(3):
            _served(tele, _ctx())
        assert _count() == before  # counted in process, not yet published
        await _until(lambda: _count() == before + 3)
        assert _sample("gatehouse_upstream_duration_seconds_count", service=SERVICE) == upstream_before + 3
        await asyncio.sleep(0.15)  # more timer ticks add nothing
        assert _count() == before + 3
    finally:
        await tele.stop()


async def test_stop_publishes_the_last_counts_and_scrapes_publish_on_demand() -> None:
    tele = _telemetry(60.0)  # the timer never fires in this test
    before = _count("503")
    await tele.start()
    _served(tele, _ctx(), 503)
    tele.publish_metrics()  # what /metrics does before rendering
    assert _count("503") == before + 1
    _served(tele, _ctx(), 503)
    assert _count("503") == before + 1
    await tele.stop()
    assert _count("503") == before + 2


async def test_in_flight_counts_started_requests_only() -> None:
    tele = _telemetry(60.0)
    await tele.start()
    try:
        ctx = _ctx()
        tele.request_started(ctx)
        tele.publish_metrics()
        assert _sample("gatehouse_in_flight_requests") == 1
        ctx.status = 200
        tele.request_finished(ctx)
        never_started = _ctx()  # e.g. the client left before routing finished
        never_started.status = 499
        tele.request_finished(never_started)
        tele.publish_metrics()
        assert _sample("gatehouse_in_flight_requests") == 0
    finally:
        await tele.stop()
