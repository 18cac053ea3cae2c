"""``routes[].plugins.forward_auth`` and the global ``plugins.forward_auth``.

Per route::

    forward_auth:
      url: http://users:8080/authz/admin
      headers: [x-tenant-id]                 # request headers passed along
      response_headers: [x-admin-id, x-admin-roles]
      cache_ttl: 30
      failure: closed                        # or open

docs/forward-auth.md is the reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from hotpath.structs import Strict

HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")]
Part = Literal["method", "path", "path_params", "query", "identity"]
DEFAULT_PARTS: Final[tuple[Part, ...]] = ("method", "path", "path_params", "identity")
# Headers a route may neither pass along nor take from an answer: framing, hop-by-hop,
# and those whose meaning the gateway owns.
RESERVED: Final = frozenset({
    "connection", "content-length", "content-type", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "x-request-id", "x-correlation-id", "x-forwarded-for",
    "x-forwarded-proto", "x-forwarded-host", "forwarded",
})
_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")


class ForwardAuthConfig(Strict, frozen=True, kw_only=True):
    # The authorization endpoint: it gets a POST with a JSON description of the request.
    url: str
    # Seconds one call may take; then the failure mode applies.
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 1.0
    # What the description holds (besides the headers named in ``headers``).
    send: tuple[Part, ...] = DEFAULT_PARTS
    # Request headers passed along in the description (the caller's values).
    headers: tuple[HeaderName, ...] = ()
    # Headers of an allowing answer added to the upstream request; a client can never send
    # its own (the gateway removes them from every request).
    response_headers: tuple[HeaderName, ...] = ()
    # Seconds an answer (allow or deny) is reused for the same caller and description; 0: never.
    cache_ttl: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    # closed: refuse with 503 when the service fails or times out; open: let the request through.
    failure: Literal["closed", "open"] = "closed"

    def __post_init__(self) -> None:
        if not _URL.match(self.url):
            raise ValueError(f"url: '{self.url}' is not an http(s) URL without query or fragment")
        if len(set(self.send)) != len(self.send):
            raise ValueError("send lists a value twice")
        for field, names in (("headers", self.headers), ("response_headers", self.response_headers)):
            if len(set(names)) != len(names):
                raise ValueError(f"{field} lists a header twice")
            for name in names:
                if name in RESERVED:
                    raise ValueError(f"{field}: '{name}' is framing, hop-by-hop or the gateway's own")


class ForwardAuthSettings(Strict, frozen=True, kw_only=True):
    # Connections one worker keeps to the authorization services.
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # Answers remembered per worker, over every route.
    cache_size: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 10_000
    # With Redis: answers are shared by every worker and pod, and one call is in flight
    # per description fleet-wide.
    shared: bool = True
    # Longest an answer's headers may be, in bytes.
    max_answer_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
