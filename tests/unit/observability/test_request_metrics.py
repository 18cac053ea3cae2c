"""Batched request metrics: what a publish writes equals what direct updates would have written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from hotpath.deferred import HistogramAccumulator, HistogramLayoutError
from observability import metrics
from observability.request_metrics import RequestFamilies, RequestMetrics

REPO = Path(__file__).resolve().parents[3]


def _families(registry: CollectorRegistry) -> RequestFamilies:
    return RequestFamilies(
        requests=Counter("gatehouse_requests", "r", ("route", "method", "status"), registry=registry),
        request_duration=Histogram(
            "gatehouse_request_duration_seconds", "d", ("route",), buckets=metrics.LATENCY_BUCKETS, registry=registry
        ),
        upstream_duration=Histogram(
            "gatehouse_upstream_duration_seconds", "u", ("service",), buckets=metrics.LATENCY_BUCKETS,
            registry=registry,
        ),
        in_flight=Gauge("gatehouse_in_flight_requests", "f", registry=registry),
    )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_publish_writes_what_direct_updates_would() -> None:
    direct_reg, batched_reg = CollectorRegistry(), CollectorRegistry()
    direct, batched = _families(direct_reg), _families(batched_reg)
    rm = RequestMetrics(("api", "admin"), ("backend",), families=batched)
    rng = random.Random(7)
    # Every bucket bound exactly (Prometheus counts a value equal to "le" in that bucket),
    # just above each bound, zero, and values past the last bound.
    durations = [*metrics.LATENCY_BUCKETS, *(b * 1.0001 for b in metrics.LATENCY_BUCKETS), 0.0, 31.0, 3600.0]
    durations += [rng.uniform(0, 2) for _ in range(500)]
    for i, seconds in enumerate(durations):
        route = ("api", "admin", metrics.UNMATCHED_ROUTE)[i % 3]
        method = ("GET", "POST", "DELETE")[i % 5 % 3]
        status = (200, 404, 503, 200)[i % 4]
        rm.route(route).record(method, status, seconds)
        direct.requests.labels(route, method, str(status)).inc()
        direct.request_duration.labels(route).observe(seconds)
        rm.upstream("backend").observe(seconds / 2)
        direct.upstream_duration.labels("backend").observe(seconds / 2)
    assert _value(batched_reg, "gatehouse_requests_total", route="api", method="GET", status="200") == 0
    rm.publish()
    want, got = _samples(direct_reg), _samples(batched_reg)
    assert want.keys() == got.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_each_delta_is_published_once() -> None:
    reg = CollectorRegistry()
    rm = RequestMetrics(("api",), ("backend",), families=_families(reg))
    api = rm.route("api")
    for _ in range(5):
        api.record("GET", 200, 0.003)
    rm.publish()
    rm.publish()  # nothing new: nothing added
    assert _value(reg, "gatehouse_requests_total", route="api", method="GET", status="200") == 5
    api.record("GET", 200, 0.003)
    api.record("GET", 201, 0.003)
    rm.publish()
    assert _value(reg, "gatehouse_requests_total", route="api", method="GET", status="200") == 6
    assert _value(reg, "gatehouse_requests_total", route="api", method="GET", status="201") == 1
    assert _value(reg, "gatehouse_request_duration_seconds_count", route="api") == 7
    assert _value(reg, "gatehouse_request_duration_seconds_bucket", route="api", le="0.0025") == 0
    assert _value(reg, "gatehouse_request_duration_seconds_bucket", route="api", le="0.005") == 7
    assert _value(reg, "gatehouse_request_duration_seconds_sum", route="api") == pytest.approx(0.021)


def test_unknown_methods_share_one_label_and_one_entry() -> None:
    reg = CollectorRegistry()
    rm = RequestMetrics(("api",), (), families=_families(reg))
    api = rm.route("api")
    for method in ("BREW", "PROPFIND", "X" * 100, "get"):
        api.record(method, 405, 0.001)
    assert set(api.counts) == {"OTHER"}
    rm.publish()
    assert _value(reg, "gatehouse_requests_total", route="api", method="OTHER", status="405") == 4
    assert not [s for s in _samples(reg) if ("method", "BREW") in s[1]]


def test_in_flight_is_published_as_the_workers_value() -> None:
    reg = CollectorRegistry()
    rm = RequestMetrics((), (), families=_families(reg))
    rm.in_flight += 3
    rm.publish()
    assert _value(reg, "gatehouse_in_flight_requests") == 3
    rm.in_flight -= 3
    rm.publish()
    assert _value(reg, "gatehouse_in_flight_requests") == 0


def test_a_histogram_of_another_shape_is_refused_at_startup() -> None:
    class NotAHistogram:
        _upper_bounds = [0.1, 1.0]  # no +Inf bucket, no _buckets

    with pytest.raises(HistogramLayoutError):
        HistogramAccumulator(NotAHistogram())


_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from observability.request_metrics import RequestMetrics

    published, unpublished, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rm = RequestMetrics(("api",), ("backend",))
    for _ in range(published):
        rm.route("api").record("GET", 200, 0.002)
        rm.upstream("backend").observe(0.001)
    rm.in_flight = 1
    rm.publish()
    for _ in range(unpublished):
        rm.route("api").record("GET", 200, 0.002)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    rm.in_flight = 0
    rm.publish()  # what a clean stop does
    """
)


def _worker(directory: Path, published: int, unpublished: int, how: str) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(published), str(unpublished), how],
        env=env, cwd=REPO, capture_output=True, timeout=60,
    )
    return proc.returncode


def test_published_counts_outlive_a_killed_process_and_are_summed_once(tmp_path: Path) -> None:
    # Real worker processes writing prometheus-client's multiprocess files: one is killed
    # with SIGKILL after a publish (its later requests are the documented loss), one stops
    # cleanly and publishes everything.
    assert _worker(tmp_path, 5, 3, "kill") == -signal.SIGKILL
    assert _worker(tmp_path, 4, 2, "clean") == 0
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert _value(reg, "gatehouse_requests_total", route="api", method="GET", status="200") == 5 + 4 + 2
    assert _value(reg, "gatehouse_request_duration_seconds_count", route="api") == 11
    assert _value(reg, "gatehouse_upstream_duration_seconds_count", service="backend") == 9
