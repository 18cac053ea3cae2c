"""Deferred counters: increments stay in process until published, then land exactly once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from observability.deferred_counters import DeferredCounters


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
