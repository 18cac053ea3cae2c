"""The ``cors`` plugin: Cross-Origin Resource Sharing answered at the gateway.

- Preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  here and never reaches the upstream. An allowed one gets the ``Access-Control-Allow-*``
  headers; a refused one (origin, method or header not allowed) gets none, which the
  browser treats as a failure.
- Other requests from an allowed origin get ``Access-Control-Allow-Origin`` (plus
  credentials and exposed headers as configured) on every response, upstream or local
  (cache hits and gateway errors included). A disallowed origin gets no CORS headers.
- ``Vary: Origin`` is sent whenever the answer depends on the origin, including on
  responses to requests without one, so shared caches never hand one origin's answer to
  another.
- The upstream's own ``Access-Control-*`` headers are removed (the gateway owns CORS for
  the route) unless ``keep_upstream_headers`` is set.

Origins are exact (``https://app.example.com``), wildcard on the leftmost host labels
(``https://*.example.com`` matches any subdomain depth, never the bare domain), or ``*``
(any origin; refused together with ``credentials: true``, as browsers refuse it).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

import msgspec

from hotpath.bounded import remember
from hotpath.context import Header, RequestContext
from hotpath.plugin import BodyTap, Plugin, PluginSetup, Verdict
from hotpath.responses import LocalResponse, ResponseHead
from hotpath.structs import Strict

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>\*\.)?(?P<rest>[a-z0-9\-.]+|\[[0-9a-f:.]+\])(?::(?P<port>\d{1,5}))?")
_MAX_REMEMBERED = 1024

ORIGIN = b"origin"
REQUEST_METHOD = b"access-control-request-method"
REQUEST_HEADERS = b"access-control-request-headers"
ALLOW_ORIGIN = b"access-control-allow-origin"
_CORS_PREFIX = b"access-control-"


class CorsConfig(Strict, frozen=True, kw_only=True):
    origins: tuple[str, ...] = ()
    # Methods a cross-origin request may use (preflight Access-Control-Allow-Methods).
    methods: tuple[str, ...] = ("GET", "HEAD", "POST")
    # Request headers a cross-origin request may send; "*" allows whatever is asked.
    headers: tuple[str, ...] = ()
    # Response headers scripts may read besides the CORS-safelisted ones.
    expose_headers: tuple[str, ...] = ()
    credentials: bool = False
    # Seconds a browser may cache a preflight answer.
    max_age: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 600
    preflight_status: Literal[200, 204] = 204
    keep_upstream_headers: bool = False

    def __post_init__(self) -> None:
        if "*" in self.origins and self.credentials:
            raise ValueError(
                "origins: '*' cannot be combined with credentials: true (browsers refuse it); "
                "list the allowed origins instead"
            )
        for origin in self.origins:
            if origin not in ("*", "null") and _ORIGIN.fullmatch(origin.lower()) is None:
                raise ValueError(
                    f"origins: '{origin}' is not an origin (scheme://host[:port], optionally "
                    "'*.' before the host, no path)"
                )
        for field, values in (("methods", self.methods), ("headers", self.headers),
                              ("expose_headers", self.expose_headers)):
            for v in values:
                if v != "*" and not _TOKEN.fullmatch(v):
                    raise ValueError(f"{field}: '{v}' is not a valid HTTP token")
        if "*" in self.headers and len(self.headers) > 1:
            raise ValueError("headers: '*' already allows every header; list nothing else")


def _pattern(origin: str) -> re.Pattern[str]:
    m = _ORIGIN.fullmatch(origin)
    assert m is not None
    port = f":{m['port']}" if m["port"] else ""
    return re.compile(rf"{m['scheme']}://(?:[a-z0-9\-]+\.)+{re.escape(m['rest'] + port)}")


class OriginPolicy:
    """Decides whether an ``Origin`` value is allowed; remembers recent answers."""

    __slots__ = ("_any", "_exact", "_patterns", "_seen")

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._any = "*" in origins
        self._exact = frozenset(o.lower().encode("latin-1") for o in origins if "*" not in o)
        self._patterns = tuple(_pattern(o.lower()) for o in origins if "*." in o)
        self._seen: dict[bytes, bool] = {}

    @property
    def any(self) -> bool:
        return self._any

    def allows(self, origin: bytes) -> bool:
        if self._any:
            return True
        known = self._seen.get(origin)
        if known is not None:
            return known
        low = origin.lower()
        ok = low in self._exact
        if not ok and self._patterns and low.isascii():
            text = low.decode("ascii")
            ok = any(p.fullmatch(text) for p in self._patterns)
        return remember(self._seen, origin, ok, _MAX_REMEMBERED)  # bounded against invented origins


class CorsPlugin(Plugin[CorsConfig]):
    name: ClassVar[str] = "cors"
    # First of all: a preflight carries no credentials, so it must be answered before auth.
    priority: ClassVar[int] = 2000
    config_type: ClassVar[type[CorsConfig]] = CorsConfig

    def __init__(self, config: CorsConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        self._origins = OriginPolicy(config.origins)
        self._methods = frozenset(m.upper() for m in config.methods)
        self._reflect_headers = "*" in config.headers
        self._headers = frozenset(h.lower() for h in config.headers)
        # With "*" and no credentials the answer is the same for every origin.
        self._star = self._origins.any and not config.credentials
        vary_origin: list[Header] = [] if self._star else [(b"vary", b"Origin")]
        self._vary_only = vary_origin
        creds: list[Header] = [(b"access-control-allow-credentials", b"true")] if config.credentials else []
        expose: list[Header] = (
            [(b"access-control-expose-headers", ", ".join(config.expose_headers).encode())]
            if config.expose_headers else []
        )
        self._actual_extra: tuple[Header, ...] = (*creds, *expose, *vary_origin)
        self._preflight_vary: Header = (
            b"vary",
            b"Access-Control-Request-Method, Access-Control-Request-Headers"
            if self._star
            else b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
        fixed: list[Header] = [*creds, (b"access-control-allow-methods", ", ".join(config.methods).encode())]
        if config.headers and not self._reflect_headers:
            fixed.append((b"access-control-allow-headers", ", ".join(config.headers).encode()))
        fixed.append((b"access-control-max-age", str(config.max_age).encode()))
        self._preflight_fixed: tuple[Header, ...] = tuple(fixed)
        self._star_header: Header = (ALLOW_ORIGIN, b"*")
        self._status = config.preflight_status

    def check(self) -> None:
        methods = self.route.methods
        if methods and "OPTIONS" not in methods:
            raise ValueError(
                f"route '{self.route.name}' allows only {', '.join(methods)}: add OPTIONS to its methods so "
                "preflight requests reach the cors plugin"
            )

    async def on_request(self, ctx: RequestContext) -> Verdict:
        origin: bytes | None = None
        req_method: bytes | None = None
        req_headers: bytes | None = None
        for k, v in ctx.headers:
            if k == ORIGIN:
                origin = v
            elif k == REQUEST_METHOD:
                req_method = v
            elif k == REQUEST_HEADERS:
                req_headers = v if req_headers is None else req_headers + b"," + v
        if ctx.method == "OPTIONS" and origin is not None and req_method is not None:
            return self._preflight(origin, req_method, req_headers)
        if origin is None or not self._origins.allows(origin):
            if self._vary_only:
                ctx.response_headers.extend(self._vary_only)
            return None
        ctx.response_headers.append(self._star_header if self._star else (ALLOW_ORIGIN, origin))
        ctx.response_headers.extend(self._actual_extra)
        return None

    def _preflight(self, origin: bytes, method: bytes, requested: bytes | None) -> LocalResponse:
        headers: list[Header] = [self._preflight_vary]
        if not self._origins.allows(origin):
            return LocalResponse(self._status, headers)
        if method.decode("latin-1") not in self._methods:
            return LocalResponse(self._status, headers)
        names = [n.strip().lower() for n in requested.decode("latin-1").split(",")] if requested else []
        names = [n for n in names if n]
        if names and not self._reflect_headers and any(n not in self._headers for n in names):
            return LocalResponse(self._status, headers)
        if names and any(not _TOKEN.fullmatch(n) for n in names):
            return LocalResponse(self._status, headers)
        headers.append(self._star_header if self._star else (ALLOW_ORIGIN, origin))
        headers.extend(self._preflight_fixed)
        if self._reflect_headers and names:
            headers.append((b"access-control-allow-headers", ", ".join(names).encode("latin-1")))
        return LocalResponse(self._status, headers)

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        if self.config.keep_upstream_headers:
            return None
        hs = head.headers
        if any(k.startswith(_CORS_PREFIX) for k, _ in hs):
            ours = {id(h) for h in ctx.response_headers}
            head.headers = [h for h in hs if not h[0].startswith(_CORS_PREFIX) or id(h) in ours]
        return None
