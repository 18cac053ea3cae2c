"""Every Prometheus metric the gateway exports, defined in one place.

Label values are bounded: route and service names from the config, fixed outcome words,
never a raw path, user or key. Hot-path code never calls ``.labels()`` per request: it
resolves the children it needs once (at plugin or service construction) and keeps them.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gatehouse run`` sets it before the workers
start), prometheus-client writes each worker's values to memory-mapped files and
``/metrics`` sums them across workers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

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

RATE_LIMIT_DECISIONS = Counter(
    "gatehouse_rate_limit_decisions",
    "Rate-limit decisions; outcome is allowed, limited, fail_open (Redis unavailable, admitted by the "
    "in-process fallback) or fail_closed (Redis unavailable, refused).",
    ("policy", "tier", "outcome"),
)

BREAKER_STATE = Gauge(
    "gatehouse_breaker_state",
    "Circuit breaker state per service: 0 closed, 1 half-open, 2 open.",
    ("service",),
    multiprocess_mode="livemax",
)
BREAKER_TRANSITIONS = Counter(
    "gatehouse_breaker_transitions",
    "Breaker state changes seen by this worker.",
    ("service", "from_state", "to_state"),
)
BREAKER_OUTCOMES = Counter(
    "gatehouse_breaker_outcomes", "Upstream call outcomes recorded by breakers.", ("service", "outcome")
)
BREAKER_REJECTIONS = Counter(
    "gatehouse_breaker_rejections", "Requests refused because a breaker was open.", ("service",)
)
BREAKER_LOCAL_FALLBACK = Counter(
    "gatehouse_breaker_local_fallback",
    "Breaker decisions taken by the in-process fallback because Redis was unavailable.",
    ("service",),
)
RETRIES = Counter("gatehouse_retries", "Upstream retries, by reason.", ("service", "reason"))
RETRY_BUDGET_EXHAUSTED = Counter(
    "gatehouse_retry_budget_exhausted", "Retries skipped because the retry budget was spent.", ("service",)
)

CACHE_REQUESTS = Counter(
    "gatehouse_cache_requests",
    "Cache lookups; result is hit, miss, bypass or coalesced.",
    ("route", "result"),
)
CACHE_STORES = Counter("gatehouse_cache_stores", "Responses written to the cache.", ("route",))

REDIS_ERRORS = Counter("gatehouse_redis_errors", "Redis calls that failed or timed out.", ("operation",))
REDIS_LATENCY = Histogram(
    "gatehouse_redis_latency_seconds",
    "Redis round-trip time per call (a batch counts once).",
    ("operation",),
    buckets=REDIS_BUCKETS,
)
REDIS_BATCH_SIZE = Histogram(
    "gatehouse_redis_batch_size", "Decisions carried by one Redis call.", ("operation",),
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

AUTH_DECISIONS = Counter("gatehouse_auth_decisions", "Authentication outcomes.", ("route", "outcome"))
JWKS_FETCHES = Counter("gatehouse_jwks_fetches", "JWKS fetches, by result.", ("provider", "result"))

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
