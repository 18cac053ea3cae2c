"""Header hygiene in both directions, prepared once per configuration.

Upstream-bound requests lose hop-by-hop headers (RFC 9110 section 7.6.1, plus any named in
``Connection``), the gateway-owned identity headers a client might try to spoof, and
client-sent ``X-Forwarded-*`` unless the peer is a trusted proxy. The gateway then sets
``X-Forwarded-For/-Proto/-Host``, ``X-Request-ID`` and ``X-Correlation-ID``.
Responses lose hop-by-hop headers too and get the request identity headers back.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable

from hotpath.context import Header

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
REQUEST_ID = b"x-request-id"
CORRELATION_ID = b"x-correlation-id"
XFF = b"x-forwarded-for"
XFP = b"x-forwarded-proto"
XFH = b"x-forwarded-host"
FORWARDED = b"forwarded"
REAL_IP = b"x-real-ip"
HOST = b"host"
CONTENT_LENGTH = b"content-length"
EXPECT = b"expect"

_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_MAX_TRUST_CACHE = 4096


def new_request_id() -> str:
    return secrets.token_hex(16)


def safe_id(value: bytes | None) -> str | None:
    """A client-sent id, if it is short and harmless enough to log and echo back."""
    if value is not None and _SAFE_ID.fullmatch(value):
        return value.decode("ascii")
    return None


class TrustedProxies:
    """Decides whether a peer's X-Forwarded-* headers are believed, and who the client is."""

    __slots__ = ("_cache", "_networks")

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in n for n in self._networks)
            except ValueError:
                hit = False
            if len(self._cache) >= _MAX_TRUST_CACHE:
                self._cache.clear()
            self._cache[ip] = hit
        return hit

    def client_from_chain(self, peer: str, xff: bytes | None) -> str:
        """The right-most address in ``X-Forwarded-For`` that is not a trusted proxy."""
        if xff is None or not self.trusts(peer):
            return peer
        for part in reversed(xff.split(b",")):
            ip = part.strip().decode("latin-1")
            if ip and not self.trusts(ip):
                return ip
        return peer


class RequestHeaderPolicy:
    """Builds the upstream request's header list from the client's, in one pass.

    Values stay the bytes the client sent (UTF-8, latin-1 or opaque), as nginx relays them.
    """

    __slots__ = ("_drop", "_trusted", "_underscored")

    def __init__(self, identity_headers: Iterable[str], trusted: TrustedProxies) -> None:
        owned = {h.lower().encode("latin-1") for h in identity_headers}
        # Always dropped: hop-by-hop, identity headers the gateway owns, Host (the upstream
        # gets its own), Content-Length (the client library frames the body itself),
        # Expect (the gateway already answered any 100-continue), and the ids it re-sets.
        self._drop = frozenset(HOP_BY_HOP | owned | {HOST, CONTENT_LENGTH, EXPECT, REQUEST_ID, CORRELATION_ID})
        # X_User_Id reaches a WSGI/CGI upstream as HTTP_X_USER_ID, the same as X-User-Id:
        # an underscore spelling of a header the gateway owns or sets is dropped too.
        self._underscored = frozenset(self._drop | {XFF, XFP, XFH, FORWARDED, REAL_IP})
        self._trusted = trusted

    def build(
        self,
        headers: list[Header],
        *,
        peer: str,
        scheme: str,
        request_id: str,
        correlation_id: str | None,
        extra: list[Header],
    ) -> list[Header]:
        drop = self._drop
        connection_named: frozenset[bytes] = frozenset()
        out: list[Header] = []
        xff: bytes | None = None
        xfp: bytes | None = None
        xfh: bytes | None = None
        host: bytes | None = None
        for k, v in headers:
            if k == b"connection":
                connection_named = frozenset(t.strip().lower() for t in v.split(b",") if t.strip())
                continue
            if k in drop:
                if k == HOST:
                    host = v
                continue
            if k == XFF:
                xff = v if xff is None else xff + b", " + v
                continue
            if k == XFP:
                xfp = v
                continue
            if k == XFH:
                xfh = v
                continue
            if k in (FORWARDED, REAL_IP):
                # Client-address claims (RFC 7239, nginx's X-Real-IP): believed, like
                # X-Forwarded-*, only from a trusted proxy; an upstream may act on them.
                if self._trusted and self._trusted.trusts(peer):
                    out.append((k, v))
                continue
            if 95 in k and k.replace(b"_", b"-") in self._underscored:  # 95: "_"
                continue
            out.append((k, v))
        if connection_named:
            out = [(k, v) for k, v in out if k not in connection_named]
        trusted = bool(self._trusted) and self._trusted.trusts(peer)
        peer_b = peer.encode("latin-1")
        if trusted and xff is not None:
            out.append((XFF, xff + b", " + peer_b))
        else:
            out.append((XFF, peer_b))
        out.append((XFP, xfp if trusted and xfp else scheme.encode("latin-1")))
        fwd_host = xfh if trusted and xfh else host
        if fwd_host is not None:
            out.append((XFH, fwd_host))
        out.append((REQUEST_ID, request_id.encode("latin-1")))
        if correlation_id is not None:
            out.append((CORRELATION_ID, correlation_id.encode("latin-1")))
        out.extend(extra)
        return out


def response_headers(
    upstream: Iterable[Header],
    request_id_header: Header,
    correlation_header: Header | None,
) -> list[Header]:
    """Client-bound headers from the upstream's (names lowercased): hop-by-hop removed,
    request ids added."""
    out: list[Header] = []
    connection_named: list[bytes] = []
    for k, v in upstream:
        if k in HOP_BY_HOP:
            if k == b"connection":
                connection_named.extend(t.strip().lower() for t in v.split(b","))
            continue
        if k in (REQUEST_ID, CORRELATION_ID):
            continue
        out.append((k, v))
    if connection_named:
        named = frozenset(connection_named)
        out = [h for h in out if h[0] not in named]
    out.append(request_id_header)
    if correlation_header is not None:
        out.append(correlation_header)
    return out
