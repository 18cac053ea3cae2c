"""The route table: compiled once, immutable, matched by path prefix or template.

Matching is the longest prefix at a segment boundary (``/api/users`` matches
``/api/users`` and ``/api/users/7``, never ``/api/usersX``); exact routes win over prefix
routes of the same path. Lookup walks the path's segment boundaries from the longest down
and probes a dict at each, so its cost depends on the path's depth, not on the number of
routes.

Routes whose path is a template (``/jobs/{job_id}/stream``, see ``hotpath.templates``) live
in a tree of their own, consulted only when the table has any. Static segments beat
parameters: a static exact route wins outright, and a template wins over a static prefix
route only when it matches more segments than that prefix has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hotpath.context import RouteInfo
from hotpath.plugin import Chain
from hotpath.templates import Template, TemplateConflict, TemplateTree, is_template
from hotpath.upstream.service import Service


class Route:
    """One compiled route: where it matches, where it forwards, and its plugin chain."""

    __slots__ = (
        "chain",
        "depth",
        "info",
        "match",
        "max_body_bytes",
        "methods",
        "name",
        "path",
        "retry_non_idempotent",
        "service",
        "strip_len",
        "strip_segments",
        "template",
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
        # A template route's parameters are read from the path by its compiled template.
        self.template: Template | None = Template(info.path) if is_template(info.path) else None
        key = info.path.rstrip("/")
        # Segments a prefix match consumes: a template beats a static prefix only with more.
        self.depth = self.template.depth if self.template is not None else key.count("/")
        # A template's prefix has no fixed length: strip its segments instead.
        self.strip_segments = self.depth if strip_prefix and self.template is not None else 0
        self.strip_len = len(key) if strip_prefix and self.template is None else 0
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
        elif self.strip_segments:
            cut = 0
            for _ in range(self.strip_segments):
                cut = path.find("/", cut + 1)
                if cut < 0:
                    cut = len(path)
                    break
            path = path[cut:]
        if self.upstream_prefix:
            return self.upstream_prefix + path
        return path or "/"


class RouteTable:
    """Immutable lookup structure; a new config builds a new table and swaps it whole."""

    __slots__ = ("_exact", "_prefix", "_templates", "routes")

    def __init__(self, routes: Sequence[Route]) -> None:
        """Raises ``TemplateConflict`` (its indexes are into ``routes``)."""
        exact: dict[str, list[Route]] = {}
        prefix: dict[str, list[Route]] = {}
        templated: list[tuple[Template, str, frozenset[str], Route]] = []
        where: list[int] = []
        for i, r in enumerate(routes):
            if r.template is not None:
                templated.append((r.template, r.match, r.methods, r))
                where.append(i)
                continue
            key = r.path if r.match == "exact" else (r.path.rstrip("/") or "/")
            (exact if r.match == "exact" else prefix).setdefault(key, []).append(r)
        self.routes: tuple[Route, ...] = tuple(routes)
        self._exact: dict[str, tuple[Route, ...]] = {k: tuple(v) for k, v in exact.items()}
        self._prefix: dict[str, tuple[Route, ...]] = {k: tuple(v) for k, v in prefix.items()}
        self._templates: TemplateTree | None = None
        if templated:
            try:
                self._templates = TemplateTree(templated)
            except TemplateConflict as conflict:
                raise TemplateConflict(where[conflict.first], where[conflict.second], str(conflict)) from None

    def match(self, path: str, method: str) -> Route | None:
        """The route for this path and method, or None (see ``allowed_methods`` for 405).
        A template route's parameters: ``route.template.params(path)``."""
        candidates = self._exact.get(path)
        if candidates is not None:
            for r in candidates:
                if not r.methods or method in r.methods:
                    return r
        static: Route | None = None
        candidates = self._longest_prefix(path)
        if candidates is not None:
            for r in candidates:
                if not r.methods or method in r.methods:
                    static = r
                    break
        templates = self._templates
        if templates is None:
            return static
        templated: Route | None = templates.find(path, method)
        if templated is not None and (static is None or templated.depth > static.depth):
            return templated
        return static

    def allowed_methods(self, path: str) -> frozenset[str] | None:
        """Methods that would match this path, or None if no route's path matches at all."""
        found: set[str] = set()
        matched = False
        for candidates in (self._exact.get(path), self._longest_prefix(path)):
            if candidates:
                matched = True
                for r in candidates:
                    found |= r.methods
        if self._templates is not None:
            methods = self._templates.methods(path)
            if methods is not None:
                matched = True
                found |= methods
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
