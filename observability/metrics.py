"""The request, audit and access-log metrics.

The core's families live in ``hotpath/metrics.py`` and each plugin's in its own package
(``plugins/<name>/metrics.py``); docs/observability.md lists them all. Label values are
bounded: route and service names from the config, fixed outcome words, never a raw path,
user or key. Hot-path code never calls ``.labels()`` per request: it resolves the children
it needs once (at plugin or service construction) and keeps them.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gatehouse run`` sets it before the workers
start), prometheus-client writes each worker's values to memory-mapped files and
``/metrics`` sums them across workers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNMATCHED_ROUTE = "(unmatched)"

REQUESTS = Counter(
    "gatehouse_requests", "Requests answered, by route, method and status.", ("route", "method", "status")
)

REQUEST_DURATION = Histogram(
    "gatehouse_request_duration_seconds", "Time in the gateway, first byte in to last byte out.", ("route",),
    buckets=LATENCY_BUCKETS,
)

UPSTREAM_DURATION = Histogram(
    "gatehouse_upstream_duration_seconds", "Upstream time to response head, per attempt.", ("service",),
    buckets=LATENCY_BUCKETS,
)

IN_FLIGHT = Gauge("gatehouse_in_flight_requests", "Requests being handled.", multiprocess_mode="livesum")

AUDIT_EVENTS = Counter(
    "gatehouse_audit_events",
    "Audit events; result is sent, dropped (queue full) or failed.",
    ("type", "result"),
)

ACCESS_LOG_DROPPED = Counter(
    "gatehouse_access_log_dropped_lines",
    "Access-log lines not written; reason is queue_full (the output could not keep up and the "
    "worker's queue was full), write_error (the output failed) or shutdown (still queued when "
    "the worker stopped with its output blocked).",
    ("reason",),
)
