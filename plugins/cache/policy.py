"""HTTP caching rules the plugin applies (a pragmatic subset of RFC 9111 for a shared cache).

Storable when the method is GET, the status is in the route's list, and the response has
no ``Cache-Control`` ``no-store``/``private``/``no-cache``, no ``Set-Cookie`` and no
``Vary: *``. ``s-maxage`` (else ``max-age``) can only shorten the route TTL; a zero
lifetime means "do not store". ``Expires`` is ignored: the route TTL is the operator's word.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from hotpath.context import Header

CACHE_CONTROL: Final = b"cache-control"
VARY: Final = b"vary"
SET_COOKIE: Final = b"set-cookie"

_NEVER_STORE: Final = frozenset({"no-store", "private", "no-cache"})


class Verdict:
    """What the response head says about storing: ``ttl`` (seconds) or a ``reason`` not to."""

    __slots__ = ("reason", "ttl", "vary")

    def __init__(self, ttl: float, vary: tuple[str, ...], reason: str | None) -> None:
        self.ttl = ttl
        self.vary = vary
        self.reason = reason


def parse_cache_control(value: str) -> dict[str, str | None]:
    """Directives in lower case; values unquoted. Unknown directives are kept and ignored."""
    out: dict[str, str | None] = {}
    for part in value.split(","):
        name, sep, arg = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        out[name] = arg.strip().strip('"') if sep else None
    return out


def _seconds(value: str | None) -> float | None:
    if value is None or not value.isdigit():
        return None
    return float(value)


def judge(
    headers: Iterable[Header], route_ttl: float, respect_max_age: bool, max_vary: int
) -> Verdict:
    """Decide from the response headers whether (and for how long) to store."""
    cc_parts: list[str] = []
    vary_parts: list[str] = []
    for k, v in headers:
        if k == CACHE_CONTROL:
            cc_parts.append(v.decode("latin-1"))
        elif k == VARY:
            vary_parts.append(v.decode("latin-1"))
        elif k == SET_COOKIE:
            return Verdict(0.0, (), "set-cookie")
    ttl = route_ttl
    if cc_parts:
        cc = parse_cache_control(",".join(cc_parts))
        for directive in _NEVER_STORE:
            if directive in cc:
                return Verdict(0.0, (), directive)
        if respect_max_age:
            lifetime = _seconds(cc.get("s-maxage")) if "s-maxage" in cc else _seconds(cc.get("max-age"))
            if lifetime is not None:
                if lifetime <= 0:
                    return Verdict(0.0, (), "max-age=0")
                ttl = min(ttl, lifetime)
    vary = vary_names(vary_parts)
    if "*" in vary:
        return Verdict(0.0, (), "vary-star")
    if len(vary) > max_vary:
        return Verdict(0.0, (), "vary-too-wide")
    return Verdict(ttl, vary, None)


def vary_names(values: Iterable[str]) -> tuple[str, ...]:
    """Header names from Vary values: lower case, de-duplicated, sorted (order is not meaning)."""
    names = {n.strip().lower() for v in values for n in v.split(",") if n.strip()}
    return tuple(sorted(names))


def sorted_query(query: bytes) -> bytes:
    """Parameters ordered by name; values of a repeated name keep their order (it can matter)."""
    if query.find(b"&") < 0:  # not `in`: bytes-in-bytes formats a TypeError first (hotpath/paths.py)
        return query
    parts = [p for p in query.split(b"&") if p]
    parts.sort(key=lambda p: p.partition(b"=")[0])
    return b"&".join(parts)
