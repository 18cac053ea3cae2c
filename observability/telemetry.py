"""The hooks the hot path calls for metrics, traces and access logs.

``Telemetry`` is the interface; ``NullTelemetry`` costs a method call and nothing else,
which is what "observability off" means on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from observability import deferred_counters

if TYPE_CHECKING:
    from hotpath.context import Header, RequestContext


class Telemetry(Protocol):
    def request_started(self, ctx: RequestContext) -> None:
        """The request was routed (or failed routing); starts the server span."""

    def request_finished(self, ctx: RequestContext) -> None:
        """The response was sent (or the client went away): counters, histograms, log line."""

    def upstream_started(self, ctx: RequestContext, attempt: int) -> tuple[Any, list[Header]]:
        """Starts one upstream attempt; returns a token and headers to inject (traceparent)."""

    def upstream_finished(
        self, ctx: RequestContext, token: Any, status: int | None, error: str | None
    ) -> None:
        """Ends one upstream attempt."""

    def publish_metrics(self) -> None:
        """Publish this worker's batched request metrics now (called before a scrape)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NullTelemetry:
    _NO_HEADERS: list[Header] = []

    def request_started(self, ctx: RequestContext) -> None:
        return None

    def request_finished(self, ctx: RequestContext) -> None:
        return None

    def upstream_started(self, ctx: RequestContext, attempt: int) -> tuple[Any, list[Header]]:
        return None, self._NO_HEADERS

    def upstream_finished(
        self, ctx: RequestContext, token: Any, status: int | None, error: str | None
    ) -> None:
        return None

    def publish_metrics(self) -> None:
        deferred_counters.REGISTRY.publish()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
