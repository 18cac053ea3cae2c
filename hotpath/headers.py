"""Header hygiene in both directions, prepared once per configuration.

Upstream-bound requests lose hop-by-hop headers (RFC 9110 section 7.6.1, plus any named in
``Connection``), the gateway-owned identity headers a client might try to spoof, and
client-sent ``X-Forwarded-*`` unless the peer is a trusted proxy. The gateway then sets
``X-Forwarded-For/-Proto/-Host``, ``X-Request-ID`` and ``X-Correlation-ID``.
Responses lose hop-by-hop headers too and get the request identity headers back.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
from collections.abc import Iterable
from typing import Final

from hotpath.bounded import remember
from hotpath.context import Header

HOP_BY_HOP: Final = frozenset(
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
REQUEST_ID: Final = b"x-request-id"
CORRELATION_ID: Final = b"x-correlation-id"
XFF: Final = b"x-forwarded-for"
XFP: Final = b"x-forwarded-proto"
XFH: Final = b"x-forwarded-host"
FORWARDED: Final = b"forwarded"
REAL_IP: Final = b"x-real-ip"
HOST: Final = b"host"
CONTENT_LENGTH: Final = b"content-length"
EXPECT: Final = b"expect"

_SAFE_ID: Final = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_MAX_TRUST_CACHE: Final = 4096


# Request ids must be unique, not secret: a PRNG seeded from the OS saves a getrandom()
# call per request. Reseeded in every forked worker, so siblings never share a sequence.
_ids: Final = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
_id_bits: Final = _ids.getrandbits


def new_request_id() -> str:
    # Not an f-string with a format spec: mypyc compiles that into a str.format call
    # that parses its template on every request.
    return _id_bits(128).to_bytes(16, "big").hex()


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
            remember(self._cache, ip, hit, _MAX_TRUST_CACHE)
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


# What RequestHeaderPolicy.build does with a header other than copying it.
_DROP: Final = 0
_CONNECTION: Final = 1
_HOST: Final = 2
_XFF: Final = 3
_XFP: Final = 4
_XFH: Final = 5
_CLAIM: Final = 6


class UnsafeHeaderValue(ValueError):
    """A plugin asked to send a header whose name or value holds a CR or LF."""


class RequestHeaderPolicy:
    """Builds the upstream request's header list from the client's, in one pass.

    Values stay the bytes the client sent (UTF-8, latin-1 or opaque), as nginx relays them.
    The server's HTTP parser has already refused CR and LF inside client headers; values
    plugins add (``extra``) are checked here, since the upstream request is written as is.
    """

    __slots__ = ("_special", "_trusted", "_underscored")

    def __init__(self, identity_headers: Iterable[str], trusted: TrustedProxies) -> None:
        owned = {h.lower().encode("latin-1") for h in identity_headers}
        # Always dropped: hop-by-hop, identity headers the gateway owns, Host (the upstream
        # gets its own), Content-Length (the client library frames the body itself),
        # Expect (the gateway already answered any 100-continue), and the ids it re-sets.
        drop = frozenset(HOP_BY_HOP | owned | {HOST, CONTENT_LENGTH, EXPECT, REQUEST_ID, CORRELATION_ID})
        # One dict probe per header decides its fate; most headers are not in it.
        special = dict.fromkeys(drop, _DROP)
        special.update({b"connection": _CONNECTION, HOST: _HOST, XFF: _XFF, XFP: _XFP, XFH: _XFH,
                        FORWARDED: _CLAIM, REAL_IP: _CLAIM})
        self._special = special
        # X_User_Id reaches a WSGI/CGI upstream as HTTP_X_USER_ID, the same as X-User-Id:
        # an underscore spelling of a header the gateway owns or sets is dropped too.
        self._underscored = frozenset(drop | {XFF, XFP, XFH, FORWARDED, REAL_IP})
        self._trusted = trusted

    def build(
        self,
        headers: list[Header],
        *,
        peer: str,
        scheme: str,
        request_id: Header,
        correlation_id: Header | None,
        extra: list[Header],
    ) -> list[Header]:
        # self._special.get and out.append are called directly, not bound to locals: a
        # compiled call on a dict or list is a C call, a bound method a generic vectorcall.
        special = self._special
        connection_named: frozenset[bytes] = frozenset()
        out: list[Header] = []
        xff: bytes | None = None
        xfp: bytes | None = None
        xfh: bytes | None = None
        host: bytes | None = None
        claims: list[Header] | None = None
        for kv in headers:
            k = kv[0]
            kind = special.get(k)
            if kind is None:
                if 95 in k and k.replace(b"_", b"-") in self._underscored:  # 95: "_"
                    continue
                out.append(kv)  # the server's own tuple: nothing to allocate
            elif kind == _DROP:
                continue
            elif kind == _HOST:
                host = kv[1]
            elif kind == _XFF:
                xff = kv[1] if xff is None else xff + b", " + kv[1]
            elif kind == _XFP:
                xfp = kv[1]
            elif kind == _XFH:
                xfh = kv[1]
            elif kind == _CONNECTION:
                connection_named = frozenset(t.strip().lower() for t in kv[1].split(b",") if t.strip())
            else:
                # Client-address claims (RFC 7239, nginx's X-Real-IP): believed, like
                # X-Forwarded-*, only from a trusted proxy; an upstream may act on them.
                if claims is None:
                    claims = []
                claims.append(kv)
        trusted = bool(self._trusted) and self._trusted.trusts(peer)
        if claims is not None and trusted:
            out.extend(claims)
        if connection_named:
            out = [kv for kv in out if kv[0] not in connection_named]
        peer_b = peer.encode("latin-1")
        if trusted and xff is not None:
            out.append((XFF, xff + b", " + peer_b))
        else:
            out.append((XFF, peer_b))
        out.append((XFP, xfp if trusted and xfp else scheme.encode("latin-1")))
        fwd_host = xfh if trusted and xfh else host
        if fwd_host is not None:
            out.append((XFH, fwd_host))
        out.append(request_id)
        if correlation_id is not None:
            out.append(correlation_id)
        if extra:
            # Plugin-set headers must stay one line each: the upstream request is written
            # verbatim.
            for k, v in extra:
                # CR (13) and LF (10) by byte value: each test is a memchr, far cheaper than
                # a regex search per item.
                if 13 in v or 10 in v or 13 in k or 10 in k:
                    raise UnsafeHeaderValue(f"header {k!r} set by a plugin contains a line break")
            out.extend(extra)
        return out


# Response headers never relayed as they came: hop-by-hop ones and the ids the gateway sets.
_RESPONSE_SPECIAL: Final = HOP_BY_HOP | {REQUEST_ID, CORRELATION_ID}


def response_headers(
    upstream: Iterable[Header],
    request_id_header: Header,
    correlation_header: Header | None,
) -> list[Header]:
    """Client-bound headers from the upstream's (names lowercased): hop-by-hop removed,
    request ids added."""
    out: list[Header] = []
    connection_named: list[bytes] | None = None
    for kv in upstream:
        if kv[0] in _RESPONSE_SPECIAL:
            if kv[0] == b"connection":
                if connection_named is None:
                    connection_named = []
                connection_named.extend(t.strip().lower() for t in kv[1].split(b","))
            continue
        out.append(kv)
    if connection_named:
        named = frozenset(connection_named)
        out = [h for h in out if h[0] not in named]
    out.append(request_id_header)
    if correlation_header is not None:
        out.append(correlation_header)
    return out
