"""Per-request state. Everything here belongs to one request; configuration lives elsewhere.

A plugin keeps state of its own for a request under a ``StateKey`` it made when it was
built (``ctx.get(key)`` / ``ctx.put(key, value)``), and reports what it did in one word
with ``ctx.report(name, outcome)``: the access log and the trace carry those outcomes.
"""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar, cast

from mypy_extensions import mypyc_attr

from hotpath.audit import Refusal

Header = tuple[bytes, bytes]
T = TypeVar("T")

REQUEST_ID: Final = b"x-request-id"
CORRELATION_ID: Final = b"x-correlation-id"


class Identity:
    """Who the caller is, as established by an auth plugin.

    ``credential`` says what the caller proved it with: ``"bearer"`` (a verified JWT) or
    ``"api_key"`` (an API key or service token); the rate limiter's ``api_key`` key reads it.
    """

    __slots__ = ("claims", "credential", "roles", "scopes", "subject", "tier")

    def __init__(
        self,
        subject: str,
        tier: str,
        roles: frozenset[str] = frozenset(),
        scopes: frozenset[str] = frozenset(),
        claims: dict[str, Any] | None = None,
        credential: str = "bearer",
    ) -> None:
        self.subject = subject
        self.tier = tier
        self.roles = roles
        self.scopes = scopes
        self.claims = claims or {}
        self.credential = credential


class RouteInfo:
    """What plugins and telemetry may know about a route: its names, path (the template, for
    a template route), methods and request-body limit."""

    __slots__ = ("max_body_bytes", "methods", "name", "path", "service")

    def __init__(
        self, name: str, path: str, service: str, methods: tuple[str, ...] = (), max_body_bytes: int = 0
    ) -> None:
        self.name = name
        self.path = path
        self.service = service
        self.methods = methods  # empty: every method
        self.max_body_bytes = max_body_bytes


# Plugins run interpreted (third-party ones always): they must be able to subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class BodyTap:
    """Sees every chunk of a body as it streams (a request's or a response's).

    A tap of the request body may refuse it: ``feed``, or ``finish(True)`` (called before
    the body's end reaches the upstream), raises a ``hotpath.errors.GatewayError``. The
    upstream request is then aborted (the service never sees it complete) and the client
    gets that error if its response has not started."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:
        return None

    def finish(self, complete: bool) -> None:
        """Called once; ``complete`` is False when the body was cut short."""
        return None


class StateKey(Generic[T]):
    """A typed slot of per-request state, made once by the plugin that owns it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class RequestContext:
    """One request's state, passed through the plugin chain and the proxy."""

    __slots__ = (
        "_state",
        "body",
        "body_length",
        "body_taps",
        "bytes_in",
        "bytes_out",
        "client_gone",
        "client_ip",
        "correlation_header",
        "correlation_id",
        "headers",
        "identity",
        "method",
        "outcomes",
        "path",
        "path_params",
        "peer",
        "query",
        "receive",
        "refusal",
        "request_id",
        "request_id_header",
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
        headers: list[Header],
        *,
        peer: str,
        client_ip: str,
        request_id: str,
        correlation_id: str | None,
        started: float,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path = ""  # the normalized path, once the gateway has checked it
        self.query: bytes = scope["query_string"]
        # Client request headers as ASGI gives them (lower-case names).
        self.headers = headers
        # The address of the connection, and the client's as trusted proxies report it.
        self.peer = peer
        self.client_ip = client_ip
        self.request_id = request_id
        self.correlation_id = correlation_id
        # The id headers as sent both ways, encoded once.
        self.request_id_header: Header = (REQUEST_ID, request_id.encode("ascii"))
        self.correlation_header: Header | None = (
            (CORRELATION_ID, correlation_id.encode("ascii")) if correlation_id is not None else None
        )
        self.started = started
        # The declared body: 0 none, -1 chunked (length unknown), else its Content-Length.
        self.body_length = 0
        # The whole request body, when a plugin read it (hotpath.request_body.read_body):
        # the proxy then forwards these bytes instead of reading the client again.
        self.body: bytes | None = None
        self.route: RouteInfo | None = None
        # The route template's named parameters (``/jobs/{job_id}``), set by the router.
        self.path_params: dict[str, str] | None = None
        self.identity: Identity | None = None
        # Headers plugins add to the upstream request (already lower-case bytes).
        self.upstream_headers: list[Header] = []
        # Headers plugins add to the client response.
        self.response_headers: list[Header] = []
        # Plugins that observe the request body as the proxy forwards it.
        self.body_taps: list[BodyTap] | None = None
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_ms: float | None = None
        self.upstream_url: str | None = None
        # What each plugin did, in one word (``rate_limit: allowed``, ``cache: hit``).
        self.outcomes: dict[str, str] | None = None
        # Why a plugin refused the request, when one did (read by the audit plugin).
        self.refusal: Refusal | None = None
        # Set when the client disconnected while the exchange was still running.
        self.client_gone = False
        self.trace_id: str | None = None
        self.span: Any = None
        self._state: dict[StateKey[Any], Any] | None = None

    def header(self, name: bytes) -> bytes | None:
        """First value of a request header (name in lower case)."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def report(self, name: str, outcome: str) -> None:
        outcomes = self.outcomes
        if outcomes is None:
            self.outcomes = {name: outcome}
        else:
            outcomes[name] = outcome

    def outcome(self, name: str) -> str | None:
        outcomes = self.outcomes
        return outcomes.get(name) if outcomes is not None else None

    def get(self, key: StateKey[T]) -> T | None:
        state = self._state
        if state is None:
            return None
        return cast("T | None", state.get(key))

    def put(self, key: StateKey[T], value: T) -> None:
        state = self._state
        if state is None:
            self._state = {key: value}
        else:
            state[key] = value

    def tap_body(self, tap: BodyTap) -> None:
        """Have ``tap`` see the request body as the proxy forwards it."""
        if self.body_taps is None:
            self.body_taps = [tap]
        else:
            self.body_taps.append(tap)
