"""Request contexts for tests that drive plugins, telemetry or the proxy in process."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from hotpath.context import Header, RequestContext


def make_ctx(
    method: str = "GET",
    path: str = "/",
    *,
    query: bytes = b"",
    headers: list[Header] | None = None,
    ip: str = "127.0.0.1",
    request_id: str = "rid",
    correlation_id: str | None = None,
    receive: Any = None,
    started: float | None = None,
) -> RequestContext:
    """A context as the gateway makes it once the path is normalized."""
    scope = {"method": method, "query_string": query, "raw_path": path.encode(), "headers": headers or []}
    ctx = RequestContext(
        scope,
        receive,
        headers or [],
        peer=ip,
        client_ip=ip,
        request_id=request_id,
        correlation_id=correlation_id,
        started=perf_counter() if started is None else started,
    )
    ctx.path = path
    return ctx
