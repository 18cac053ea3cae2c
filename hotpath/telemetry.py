"""The hooks the hot path calls for metrics, traces and access logs.

``Telemetry`` is the interface, and its own hooks do nothing: ``NullTelemetry`` costs a
method call and nothing else, which is what "observability off" means on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from hotpath import deferred

if TYPE_CHECKING:
    from hotpath.context import Header, RequestContext


# The trace headers of an attempt that injects none; shared, never mutated.
NO_HEADERS: Final[list[Header]] = []


class Telemetry:
    """The hooks. This base does nothing; ``GatewayTelemetry`` overrides them.

    A class, not a Protocol: compiled (hotpath/native), a call on a native class goes
    through its vtable, while a call on a Protocol looks the method up by name, and the
    hot path makes four of them per request."""

    def request_started(self, ctx: RequestContext) -> None:
        """The request was routed (or failed routing); starts the server span."""
        return None

    def request_finished(self, ctx: RequestContext) -> None:
        """The response was sent (or the client went away): counters, histograms, log line."""
        return None

    def upstream_started(self, ctx: RequestContext, attempt: int) -> tuple[Any, list[Header]]:
        """Starts one upstream attempt; returns a token and headers to inject (traceparent)."""
        return None, NO_HEADERS

    def upstream_finished(
        self, ctx: RequestContext, token: Any, status: int | None, error: str | None
    ) -> None:
        """Ends one upstream attempt."""
        return None

    def publish_metrics(self) -> None:
        """Publish this worker's batched request metrics now (called before a scrape)."""
        deferred.REGISTRY.publish()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class NullTelemetry(Telemetry):
    """Observability off: every hook is the base's, which does nothing."""
