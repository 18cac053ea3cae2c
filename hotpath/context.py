"""Per-request state. Everything here belongs to one request; configuration lives elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotpath.router import Route

Header = tuple[bytes, bytes]


class Identity:
    """Who the caller is, as established by an auth plugin."""

    __slots__ = ("claims", "roles", "scopes", "subject", "tier")

    def __init__(
        self,
        subject: str,
        tier: str,
        roles: frozenset[str] = frozenset(),
        scopes: frozenset[str] = frozenset(),
        claims: dict[str, Any] | None = None,
    ) -> None:
        self.subject = subject
        self.tier = tier
        self.roles = roles
        self.scopes = scopes
        self.claims = claims or {}


class RequestContext:
    """One request's state, passed through the plugin chain and the proxy."""

    __slots__ = (
        "breaker_outcome",
        "bytes_in",
        "bytes_out",
        "cache_status",
        "client_gone",
        "client_ip",
        "correlation_id",
        "has_body",
        "headers",
        "identity",
        "method",
        "notes",
        "path",
        "query",
        "rate_limit_outcome",
        "receive",
        "request_id",
        "response_headers",
        "route",
        "scope",
        "span",
        "started",
        "status",
        "trace_id",
        "upstream_headers",
        "upstream_ms",
        "upstream_url",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        receive: Any,
        method: str,
        path: str,
        query: bytes,
        headers: list[Header],
        client_ip: str,
        request_id: str,
        correlation_id: str | None,
        started: float,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.method = method
        self.path = path
        self.query = query
        # Client request headers as ASGI gives them (lower-case names), already cleaned of
        # hop-by-hop and gateway-owned headers once routing has happened.
        self.headers = headers
        self.client_ip = client_ip
        # Whether the request declared a body (Content-Length or Transfer-Encoding).
        self.has_body = True
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.started = started
        self.route: Route | None = None
        self.identity: Identity | None = None
        # Headers plugins add to the upstream request (already lower-case bytes).
        self.upstream_headers: list[Header] = []
        # Headers plugins add to the client response.
        self.response_headers: list[Header] = []
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_ms: float | None = None
        self.upstream_url: str | None = None
        self.rate_limit_outcome: str | None = None
        self.breaker_outcome: str | None = None
        self.cache_status: str | None = None
        # Set when the client disconnected while the exchange was still running.
        self.client_gone = False
        self.trace_id: str | None = None
        self.span: Any = None
        # Free-form per-request data for third-party plugins; allocated only when used.
        self.notes: dict[str, Any] | None = None

    def header(self, name: bytes) -> bytes | None:
        """First value of a request header (name in lower case)."""
        for k, v in self.headers:
            if k == name:
                return v
        return None
