"""The route table: compiled once, immutable, matched by path prefix.

Matching is the longest prefix at a segment boundary (``/api/users`` matches
``/api/users`` and ``/api/users/7``, never ``/api/usersX``); exact routes win over prefix
routes of the same path. Lookup walks the path's segment boundaries from the longest down
and probes a dict at each, so its cost depends on the path's depth, not on the number of
routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hotpath.context import RouteInfo
from hotpath.plugin import Chain
from hotpath.upstream.service import Service


class Route:
    """One compiled route: where it matches, where it forwards, and its plugin chain."""

    __slots__ = (
        "chain",
        "info",
        "match",
        "max_body_bytes",
        "methods",
        "name",
        "path",
        "retry_non_idempotent",
        "service",
        "strip_len",
        "timeout",
        "upstream_prefix",
    )

    def __init__(
        self,
        info: RouteInfo,
        *,
        match: str,
        service: Service,
        strip_prefix: bool,
        upstream_prefix: str,
        timeout: float,
        max_body_bytes: int,
        retry_non_idempotent: bool,
        chain: Chain,
    ) -> None:
        # What the request context, plugins and telemetry see of this route.
        self.info = info
        self.name = info.name
        self.path = info.path
        self.match = match
        self.methods = frozenset(info.methods)  # empty: every method
        self.service = service
        self.strip_len = len(info.path.rstrip("/")) if strip_prefix else 0
        self.upstream_prefix = upstream_prefix.rstrip("/")
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.retry_non_idempotent = retry_non_idempotent
        self.chain = chain

    def upstream_path(self, path: str) -> str:
        """The path sent upstream: the normalized path, with the prefix stripped or replaced.

        ``/api`` stripped from ``/api/users`` leaves ``/users``; from ``/api`` itself it
        leaves nothing, which becomes ``/`` (or just the upstream prefix, if one is set).
        """
        if self.strip_len:
            path = path[self.strip_len :]
        if self.upstream_prefix:
            return self.upstream_prefix + path
        return path or "/"


class RouteTable:
    """Immutable lookup structure; a new config builds a new table and swaps it whole."""

    __slots__ = ("_exact", "_prefix", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        exact: dict[str, list[Route]] = {}
        prefix: dict[str, list[Route]] = {}
        for r in routes:
            key = r.path if r.match == "exact" else (r.path.rstrip("/") or "/")
            (exact if r.match == "exact" else prefix).setdefault(key, []).append(r)
        self.routes: tuple[Route, ...] = tuple(routes)
        self._exact: dict[str, tuple[Route, ...]] = {k: tuple(v) for k, v in exact.items()}
        self._prefix: dict[str, tuple[Route, ...]] = {k: tuple(v) for k, v in prefix.items()}

    def match(self, path: str, method: str) -> Route | None:
        """The route for this path and method, or None (see ``allowed_methods`` for 405)."""
        candidates = self._exact.get(path)
        if candidates is not None:
            for r in candidates:
                if not r.methods or method in r.methods:
                    return r
        candidates = self._longest_prefix(path)
        if candidates is not None:
            for r in candidates:
                if not r.methods or method in r.methods:
                    return r
        return None

    def allowed_methods(self, path: str) -> frozenset[str] | None:
        """Methods that would match this path, or None if no route's path matches at all."""
        found: set[str] = set()
        matched = False
        for candidates in (self._exact.get(path), self._longest_prefix(path)):
            if candidates:
                matched = True
                for r in candidates:
                    found |= r.methods
        return frozenset(found) if matched else None

    def _longest_prefix(self, path: str) -> tuple[Route, ...] | None:
        probe = path.rstrip("/") or "/"
        prefix = self._prefix
        while True:
            candidates = prefix.get(probe)
            if candidates is not None:
                return candidates
            if probe == "/":
                return None
            cut = probe.rfind("/")
            probe = probe[:cut] if cut > 0 else "/"

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "match": r.match,
                "path": r.path,
                "methods": sorted(r.methods) or ["*"],
                "service": r.service.name,
                "upstream": r.upstream_path(r.path) if r.strip_len or r.upstream_prefix else r.path,
                "timeout_s": r.timeout,
                "max_body_bytes": r.max_body_bytes,
                "plugins": [p.name for p in r.chain.plugins],
            }
            for r in self.routes
        ]
