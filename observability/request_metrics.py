"""Request and upstream metrics with their labelled children resolved once.

``.labels()`` costs a lock, a tuple and a dict lookup inside prometheus-client, so each
route keeps its own children: the duration histogram is resolved when the route is first
seen, request counters per (method, status) on first use. A request then costs two dict
lookups and the updates themselves.
"""

from __future__ import annotations

from typing import Any

from observability import metrics

# Methods outside this set are counted as OTHER so a client cannot mint label values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "OTHER"


class RouteMetrics:
    __slots__ = ("_counters", "duration", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.duration: Any = metrics.REQUEST_DURATION.labels(name)
        # method -> status -> counter child
        self._counters: dict[str, dict[int, Any]] = {}

    def record(self, method: str, status: int, seconds: float) -> None:
        by_status = self._counters.get(method)
        if by_status is None:
            if method not in KNOWN_METHODS:
                method = OTHER_METHOD
            by_status = self._counters.setdefault(method, {})
        child = by_status.get(status)
        if child is None:
            child = by_status[status] = metrics.REQUESTS.labels(self.name, method, str(status))
        child.inc()
        self.duration.observe(seconds)


class RequestMetrics:
    """Per-worker cache of route and service children."""

    __slots__ = ("_routes", "_services", "in_flight")

    def __init__(self, routes: tuple[str, ...], services: tuple[str, ...]) -> None:
        self._routes: dict[str, RouteMetrics] = {}
        for name in (*routes, metrics.UNMATCHED_ROUTE):
            self._routes[name] = RouteMetrics(name)
        self._services: dict[str, Any] = {name: metrics.UPSTREAM_DURATION.labels(name) for name in services}
        self.in_flight: Any = metrics.IN_FLIGHT

    def route(self, name: str) -> RouteMetrics:
        rm = self._routes.get(name)
        if rm is None:  # a route added after construction: still bounded by the config
            rm = self._routes[name] = RouteMetrics(name)
        return rm

    def upstream(self, service: str) -> Any:
        child = self._services.get(service)
        if child is None:
            child = self._services[service] = metrics.UPSTREAM_DURATION.labels(service)
        return child
