"""Per-request metrics counted in process and published to prometheus-client in batches.

A multiprocess prometheus-client update costs a lock and a memory-mapped write, and a
request would make six of them. Here a request costs plain arithmetic instead: an integer increment
per (route, method, status), a scan of precomputed bucket bounds and two adds per
histogram, and an integer for in-flight requests. ``RequestMetrics.publish`` moves the
accumulated deltas into the labelled children (resolved once and kept) on a timer, before
the worker answers a scrape, and at shutdown.

Semantics this keeps: a published count is in the worker's multiprocess files and survives
the worker (files of dead workers stay in the sum), and each delta is published exactly
once (it is zeroed when it is added), so nothing doubles. What is not yet published when a
worker is killed with SIGKILL is lost: at most one publish interval of its requests.

Label values stay bounded: route names from the config (or ``(unmatched)``), service names,
known methods (others count as ``OTHER``) and the status code.
"""

from __future__ import annotations

from typing import Any, Final

from hotpath.deferred import HistogramAccumulator
from observability import metrics

# Methods outside this set are counted as OTHER so a client cannot mint label values.
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD: Final = "OTHER"


class RequestFamilies:
    """The four families requests update; the gateway's own unless a test or bench passes others."""

    __slots__ = ("in_flight", "request_duration", "requests", "upstream_duration")

    def __init__(
        self,
        *,
        requests: Any = None,
        request_duration: Any = None,
        upstream_duration: Any = None,
        in_flight: Any = None,
    ) -> None:
        self.requests: Any = requests if requests is not None else metrics.REQUESTS
        self.request_duration: Any = request_duration if request_duration is not None else metrics.REQUEST_DURATION
        self.upstream_duration: Any = (
            upstream_duration if upstream_duration is not None else metrics.UPSTREAM_DURATION
        )
        self.in_flight: Any = in_flight if in_flight is not None else metrics.IN_FLIGHT


class RouteMetrics:
    """One route's request counts (method -> status -> count) and its duration histogram."""

    __slots__ = ("_children", "_requests", "counts", "duration", "name")

    def __init__(self, name: str, families: RequestFamilies) -> None:
        self.name = name
        self._requests = families.requests
        self.duration = HistogramAccumulator(families.request_duration.labels(name))
        # Requests since the last publish. Unknown methods share the OTHER entry, so a
        # client cannot grow these dicts; statuses are bounded by HTTP.
        self.counts: dict[str, dict[int, int]] = {}
        # method -> status -> counter child, resolved on the first publish of each pair.
        self._children: dict[str, dict[int, Any]] = {}

    def record(self, method: str, status: int, seconds: float) -> None:
        by_status = self.counts.get(method)
        if by_status is None:
            by_status = self._method_counts(method)
        by_status[status] = by_status.get(status, 0) + 1
        self.duration.observe(seconds)

    def _method_counts(self, method: str) -> dict[int, int]:
        label = method if method in KNOWN_METHODS else OTHER_METHOD
        by_status = self.counts.get(label)
        if by_status is None:
            by_status = self.counts[label] = {}
        return by_status

    def publish(self) -> None:
        if not self.duration.pending:  # every record() observes the duration
            return
        for method, by_status in self.counts.items():
            children = self._children.get(method)
            if children is None:
                children = self._children[method] = {}
            for status, n in by_status.items():
                if n:
                    child = children.get(status)
                    if child is None:
                        child = children[status] = self._requests.labels(self.name, method, str(status))
                    child.inc(n)
                    by_status[status] = 0  # values change, keys do not: safe while iterating
        self.duration.publish()


class RequestMetrics:
    """Per-worker accumulators for every route and service, plus in-flight requests."""

    __slots__ = ("_families", "_published_in_flight", "_routes", "_services", "in_flight")

    def __init__(
        self,
        routes: tuple[str, ...],
        services: tuple[str, ...],
        families: RequestFamilies | None = None,
    ) -> None:
        self._families = families or RequestFamilies()
        self._routes: dict[str, RouteMetrics] = {}
        for name in (*routes, metrics.UNMATCHED_ROUTE):
            self._routes[name] = RouteMetrics(name, self._families)
        self._services: dict[str, HistogramAccumulator] = {}
        for name in services:
            self.upstream(name)
        # Requests between request_started and request_finished in this worker.
        self.in_flight = 0
        self._published_in_flight = 0

    def route(self, name: str) -> RouteMetrics:
        rm = self._routes.get(name)
        if rm is None:  # a route added after construction: still bounded by the config
            rm = self._routes[name] = RouteMetrics(name, self._families)
        return rm

    def upstream(self, service: str) -> HistogramAccumulator:
        acc = self._services.get(service)
        if acc is None:
            acc = self._services[service] = HistogramAccumulator(self._families.upstream_duration.labels(service))
        return acc

    def publish(self) -> None:
        """Add everything counted since the last publish to the prometheus children."""
        for rm in self._routes.values():
            rm.publish()
        for acc in self._services.values():
            acc.publish()
        in_flight = self.in_flight
        if in_flight != self._published_in_flight:
            self._families.in_flight.set(in_flight)
            self._published_in_flight = in_flight
