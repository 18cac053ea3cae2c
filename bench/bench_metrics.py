"""What one request's Prometheus updates cost if made directly through cached label children.

The gateway does not pay this per request: it counts in process and publishes in batches
(observability/request_metrics.py; its real per-request cost is in bench_telemetry.py).
This group keeps the direct cost in view, as the reason for that design.

The families mirror the gateway's own (names, labels, buckets) in a private registry, in
both value modes prometheus-client has: in-process (a locked float) and multiprocess (the
memory-mapped files ``gatehouse run`` uses so ``/metrics`` sums every worker). The
multiprocess values are the library's real ``MultiProcessValue`` writing to a temporary
directory; only the choice of value class, which prometheus-client makes from an
environment variable at import time, is made here explicitly for these families.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from bench.support.fixture_types import Benchmark
from hotpath.deferred import DeferredCounters
from observability import metrics

pytestmark = pytest.mark.benchmark(group="metrics")


class RequestMetrics:
    """The children one route and one service resolve once, as the hot path keeps them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        requests = Counter("gatehouse_requests", "requests", ("route", "method", "status"), registry=registry)
        duration = Histogram(
            "gatehouse_request_duration_seconds", "d", ("route",), buckets=metrics.LATENCY_BUCKETS,
            registry=registry,
        )
        upstream = Histogram(
            "gatehouse_upstream_duration_seconds", "u", ("service",), buckets=metrics.LATENCY_BUCKETS,
            registry=registry,
        )
        in_flight = Gauge("gatehouse_in_flight_requests", "f", registry=registry, multiprocess_mode="livesum")
        self.ok = requests.labels("orders", "GET", "200")
        self.duration = duration.labels("orders")
        self.upstream = upstream.labels("orders")
        self.in_flight = in_flight
        self.requests = requests

    def one_request(self) -> None:
        self.in_flight.inc()
        self.upstream.observe(0.0012)
        self.ok.inc()
        self.duration.observe(0.0021)
        self.in_flight.dec()


@contextlib.contextmanager
def _multiprocess_values(directory: str) -> Iterator[None]:
    saved_class, saved_env = values.ValueClass, os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    library: Any = values  # prometheus-client's values module is untyped
    values.ValueClass = library.MultiProcessValue()
    try:
        yield
    finally:
        values.ValueClass = saved_class
        if saved_env is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved_env


@pytest.fixture(params=["in-process", "multiprocess"])
def request_metrics(request: pytest.FixtureRequest) -> Iterator[RequestMetrics]:
    if request.param == "in-process":
        yield RequestMetrics(CollectorRegistry())
        return
    with tempfile.TemporaryDirectory(prefix="gh-bench-prom-") as directory:
        with _multiprocess_values(directory):
            built = RequestMetrics(CollectorRegistry())
        try:
            yield built
        finally:
            library: Any = values
            library.close_all_multiprocess_files()
            cls: Any = type(built.ok._value)
            cls.close_all_files()


def bench_request_metric_updates(benchmark: Benchmark, request_metrics: RequestMetrics) -> None:
    before = request_metrics.ok._value.get()
    benchmark(request_metrics.one_request)
    after = request_metrics.ok._value.get()
    assert after - before >= 1  # every round counted
    assert request_metrics.in_flight._value.get() == 0


class OutcomeCounters:
    """The three outcome counters a full-chain request bumps in its plugins (auth, rate
    limit, breaker), as multiprocess children; optionally deferred as the gateway does."""

    def __init__(self, registry: CollectorRegistry, deferred: DeferredCounters | None) -> None:
        auth = Counter("gatehouse_auth_decisions", "a", ("route", "outcome"), registry=registry)
        limits = Counter("gatehouse_rate_limit_decisions", "r", ("policy", "tier", "outcome"), registry=registry)
        breaker = Counter("gatehouse_breaker_outcomes", "b", ("service", "outcome"), registry=registry)
        self.children = (auth.labels("orders", "allowed"), limits.labels("p", "pro", "allowed"),
                         breaker.labels("orders", "success"))
        wrap = deferred.wrap if deferred is not None else (lambda child: child)
        self.auth, self.limit, self.breaker = (wrap(c) for c in self.children)
        self.deferred = deferred

    def one_request(self) -> None:
        self.auth.inc()
        self.limit.inc()
        self.breaker.inc()


@pytest.fixture(params=["multiprocess-direct", "deferred"])
def outcome_counters(request: pytest.FixtureRequest) -> Iterator[OutcomeCounters]:
    with tempfile.TemporaryDirectory(prefix="gh-bench-prom-") as directory:
        with _multiprocess_values(directory):
            built = OutcomeCounters(CollectorRegistry(), DeferredCounters() if request.param == "deferred" else None)
        try:
            yield built
        finally:
            library: Any = values
            library.close_all_multiprocess_files()
            cls: Any = type(built.children[0]._value)
            cls.close_all_files()


def bench_plugin_outcome_counters(benchmark: Benchmark, outcome_counters: OutcomeCounters) -> None:
    """Per request: three increments (observability/deferred_counters.py is why they are cheap)."""
    benchmark(outcome_counters.one_request)
    if outcome_counters.deferred is not None:
        outcome_counters.deferred.publish()
    counted = [c._value.get() for c in outcome_counters.children]
    assert counted[0] >= 1 and counted == [counted[0]] * 3  # every round counted, nothing lost in publishing
