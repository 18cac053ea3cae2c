"""Deferred counters and histograms: what is recorded stays in process until published, then
lands exactly once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from hotpath.deferred import DeferredCounters


def test_increments_reach_the_child_only_when_published_and_only_once() -> None:
    registry = CollectorRegistry()
    family = Counter("t_outcomes", "test", ("outcome",), registry=registry)
    counters = DeferredCounters()
    ok = counters.wrap(family.labels("ok"))
    bad = counters.wrap(family.labels("bad"))

    def sample(outcome: str) -> float | None:
        return registry.get_sample_value("t_outcomes_total", {"outcome": outcome})

    for _ in range(5):
        ok.inc()
    bad.inc(2)
    assert sample("ok") == 0.0 and sample("bad") == 0.0  # nothing published yet
    counters.publish()
    assert sample("ok") == 5.0 and sample("bad") == 2.0
    counters.publish()  # nothing pending: nothing added twice
    assert sample("ok") == 5.0 and ok.pending == 0
    ok.inc()
    counters.publish()
    assert sample("ok") == 6.0


def test_histogram_observations_reach_the_child_only_when_published() -> None:
    registry = CollectorRegistry()
    family = Histogram("t_batch", "test", ("operation",), buckets=(1, 4, 16), registry=registry)
    counters = DeferredCounters()
    sizes = counters.wrap_histogram(family.labels("rate_limit"))

    def sample(suffix: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"t_batch_{suffix}", {"operation": "rate_limit", **labels})

    for size in (1, 3, 4, 17):
        sizes.observe(size)
    assert sample("count") == 0.0  # nothing published yet
    counters.publish()
    assert sample("count") == 4.0 and sample("sum") == 25.0
    # Cumulative buckets, "le" inclusive: 1 | 3, 4 | none | 17.
    assert [sample("bucket", le=le) for le in ("1.0", "4.0", "16.0", "+Inf")] == [1.0, 3.0, 3.0, 4.0]
    counters.publish()  # nothing pending: nothing added twice
    assert sample("count") == 4.0
