"""The ``Telemetry`` the gateway runs with: metrics, traces and access log, each optional.

Built from the ``observability:`` section once per worker. Each part that is switched off
is ``None`` and costs one attribute test per hook; everything a request needs (labelled
metric children, the log's buffer, the tracer) is prepared before the first request.

Request metrics are counted in process (``RequestMetrics``) and published to the shared
multiprocess files every ``metrics.publish_interval`` seconds, before this worker answers a
scrape (``publish_metrics``) and when it stops.

A request that reached ``request_started`` holds a non-``None`` ``ctx.span`` (the SDK
span, an unsampled marker, or ``STARTED``); ``request_finished`` uses that to keep the
in-flight gauge exact even for requests that never got that far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from hotpath import deferred
from hotpath.telemetry import NO_HEADERS, Telemetry
from observability import logs
from observability.access_log import AccessLog
from observability.config import ObservabilityConfig
from observability.metrics import UNMATCHED_ROUTE
from observability.request_metrics import RequestMetrics
from observability.tracing import Tracing, TracingSettings

if TYPE_CHECKING:
    from hotpath.context import Header, RequestContext

log: Final = logging.getLogger("gatehouse")
# Final: compiled code reads it from a static; a plain module global is a dict lookup per use.
perf_counter: Final = time.perf_counter
_UNMATCHED_ROUTE: Final = UNMATCHED_ROUTE

STARTED: Final = object()  # ctx.span when the request started without a recorded span


class _Attempt:
    __slots__ = ("span", "started")

    def __init__(self, started: float, span: Any) -> None:
        self.started = started
        self.span = span


class GatewayTelemetry(Telemetry):
    __slots__ = ("_publisher", "access_log", "config", "metrics", "tracing")

    def __init__(
        self,
        config: ObservabilityConfig,
        *,
        routes: tuple[str, ...] = (),
        services: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.metrics = RequestMetrics(routes, services) if config.metrics.enabled else None
        self.access_log = AccessLog(config.access_log) if config.access_log.enabled else None
        settings = TracingSettings(config.tracing, os.environ if env is None else env)
        self.tracing = Tracing(settings) if settings.enabled else None
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        logs.configure(self.config.logging)
        # Always: the plugins' deferred counters feed the admin API even without /metrics.
        self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())
        if self.access_log is not None:
            await self.access_log.start()
        if self.tracing is not None:
            await self.tracing.start()

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        self.publish_metrics()  # the worker's last counts, so a clean stop loses none
        if self.tracing is not None:
            await self.tracing.stop()
        if self.access_log is not None:
            await self.access_log.stop()

    def publish_metrics(self) -> None:
        """Publish the request counts gathered since the last publish (before a scrape),
        and the plugins' per-request counters."""
        if self.metrics is not None:
            self.metrics.publish()
        deferred.REGISTRY.publish()

    async def _publish_loop(self) -> None:
        interval = self.config.metrics.publish_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.publish_metrics()
            except Exception:  # a failing write must not end publishing for the worker's life
                log.exception("publishing request metrics failed")

    def request_started(self, ctx: RequestContext) -> None:
        if ctx.span is not None:
            return
        if self.metrics is not None:
            self.metrics.in_flight += 1
        tracing = self.tracing
        # if/else, not a second `ctx.span is None` test: mypy keeps ctx.span narrowed to None
        # across the call that sets it, and compiled code (hotpath/native) trusts that.
        if tracing is not None and tracing.tracer is not None:
            tracing.start_request(ctx)  # sets ctx.span: a span, or the unsampled marker
        else:
            ctx.span = STARTED

    def request_finished(self, ctx: RequestContext) -> None:
        duration = perf_counter() - ctx.started
        metrics = self.metrics
        if metrics is not None:
            if ctx.span is not None:
                metrics.in_flight -= 1
            route = ctx.route
            metrics.route(route.name if route is not None else _UNMATCHED_ROUTE).record(
                ctx.method, ctx.status, duration
            )
        if self.tracing is not None:
            self.tracing.end_request(ctx)
        if self.access_log is not None:
            self.access_log.write(ctx, duration)

    def upstream_started(self, ctx: RequestContext, attempt: int) -> tuple[Any, list[Header]]:
        if self.tracing is None:
            return perf_counter(), NO_HEADERS
        span, headers = self.tracing.start_attempt(ctx, attempt)
        if span is None:  # unsampled: only the start time, as with tracing off
            return perf_counter(), headers
        return _Attempt(perf_counter(), span), headers

    def upstream_finished(
        self, ctx: RequestContext, token: Any, status: int | None, error: str | None
    ) -> None:
        if isinstance(token, _Attempt):
            started: float = token.started
            if self.tracing is not None:
                self.tracing.end_attempt(token.span, status, error)
        else:
            started = token
        metrics = self.metrics
        route = ctx.route
        if metrics is not None and route is not None:
            # The histogram measures time to the response head (set by the proxy when the
            # head arrived); failed attempts count until they failed.
            head_ms = ctx.upstream_ms
            at_head = status is not None and head_ms is not None
            seconds = head_ms / 1000.0 if at_head and head_ms is not None else perf_counter() - started
            metrics.upstream(route.service).observe(seconds)
