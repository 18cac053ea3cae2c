"""Per-request counter increments (and per-call histogram observations) kept in process and
published in batches.

Why: a multiprocess prometheus-client update takes a lock and writes a memory-mapped value,
and a request of the full chain would make several of them. A ``DeferredCounter`` makes
``inc`` an integer add, and a ``HistogramAccumulator`` makes ``observe`` a scan of the
bucket bounds; the worker's metrics publisher (``GatewayTelemetry.publish_metrics``: every
publish interval, before this worker answers a scrape, and at shutdown) adds what is
pending to the real children in one update each.

Semantics: each pending amount is published once (it is zeroed as it is added), and what
is not yet published when a worker is killed with SIGKILL is lost, at most one publish
interval of it. The publisher runs with metrics disabled too: the admin API's cache
statistics read these counters.

Wrap children once, when a plugin or service is built: the registry keeps every wrapper
for the worker's life.
"""

from __future__ import annotations

from typing import Any, Final


class HistogramLayoutError(Exception):
    """prometheus-client's histogram children no longer look as this module expects.

    An Exception, not a RuntimeError: this module is compiled (hotpath/native), and mypyc
    cannot derive a class from most builtin exception types.
    """


class HistogramAccumulator:
    """Bucket counts and sum of one labelled histogram child since its last publish.

    prometheus-client has no batched ``observe``, so ``publish`` adds to the child's
    per-bucket values and its sum directly (its ``_buckets`` and ``_sum``, which hold
    non-cumulative bucket counts in both value modes). The layout is checked once, here,
    so a library change fails at startup rather than publishing into the wrong buckets.
    """

    __slots__ = ("_bounds", "_child", "counts", "pending", "total")

    def __init__(self, child: Any) -> None:
        bounds = list(getattr(child, "_upper_bounds", ()))
        buckets = getattr(child, "_buckets", None)
        if (
            not bounds
            or bounds[-1] != float("inf")
            or not isinstance(buckets, list)
            or len(buckets) != len(bounds)
            or not hasattr(child, "_sum")
        ):
            raise HistogramLayoutError("prometheus-client histogram children changed layout; cannot publish")
        self._child = child
        # Finite bounds only: a value past the last falls into len(bounds), the +Inf bucket.
        # Typed as floats: compiled, a compare with an untyped (Any) bound is a generic
        # rich comparison, with a float a C compare.
        self._bounds: tuple[float, ...] = tuple(float(b) for b in bounds[:-1])
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.pending = 0

    def observe(self, seconds: float) -> None:
        # A scan, not bisect_left: compiled, it is a loop of float compares that stops at
        # the first buckets, where most requests land; bisect is a generic call. A value
        # equal to a bound counts in that bound's bucket ("le").
        i = 0
        for bound in self._bounds:
            if seconds <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.total += seconds
        self.pending += 1

    def publish(self) -> None:
        if not self.pending:
            return
        counts = self.counts
        buckets = self._child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._child._sum.inc(self.total)
        self.total = 0.0
        self.pending = 0


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
