"""Per-request counter increments (and per-call histogram observations) kept in process and
published with the request metrics.

Why: a multiprocess prometheus-client increment takes a lock and writes a memory-mapped
value (about 1 µs, more under load), and a full-chain request made three of them in its
plugins (auth, rate-limit and breaker outcomes) on top of the request metrics, which are
already counted in process. A ``DeferredCounter`` makes ``inc`` an integer add; the
worker's metrics publisher (``GatewayTelemetry.publish_metrics``: every publish interval,
before this worker answers a scrape, and at shutdown) adds the pending amount to the real
child in one update.

Semantics match ``observability/request_metrics.py``: each pending amount is published
once (it is zeroed as it is added), and what is not yet published when a worker is killed
with SIGKILL is lost, at most one publish interval of it. The publisher runs with metrics
disabled too: the admin API's cache statistics read these counters.

Histograms observed per Redis call (the rate limiter's latency and batch size) go the same
way through ``deferred_histogram``: a multiprocess ``observe`` runs about 10,000 interpreted
instructions (two locked memory-mapped writes and a ``getpid`` each), once per batch of
decisions.

Wrap children once, when a plugin or service is built: the registry keeps every wrapper
for the worker's life.
"""

from __future__ import annotations

from typing import Any, Final

from observability.request_metrics import HistogramAccumulator


class DeferredCounter:
    __slots__ = ("child", "pending")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pending = 0

    def inc(self, amount: int = 1) -> None:
        self.pending += amount


class DeferredCounters:
    __slots__ = ("_counters", "_histograms")

    def __init__(self) -> None:
        self._counters: list[DeferredCounter] = []
        self._histograms: list[HistogramAccumulator] = []

    def wrap(self, child: Any) -> DeferredCounter:
        counter = DeferredCounter(child)
        self._counters.append(counter)
        return counter

    def wrap_histogram(self, child: Any) -> HistogramAccumulator:
        histogram = HistogramAccumulator(child)
        self._histograms.append(histogram)
        return histogram

    def publish(self) -> None:
        for counter in self._counters:
            pending = counter.pending
            if pending:
                counter.pending = 0
                counter.child.inc(pending)
        for histogram in self._histograms:
            histogram.publish()


# One registry per worker process: the app is imported after the fork.
REGISTRY: Final = DeferredCounters()


def deferred(child: Any) -> DeferredCounter:
    """``child`` (a labelled prometheus-client counter) with increments published in batches."""
    return REGISTRY.wrap(child)


def deferred_histogram(child: Any) -> HistogramAccumulator:
    """``child`` (a labelled prometheus-client histogram) with observations published in
    batches."""
    return REGISTRY.wrap_histogram(child)
