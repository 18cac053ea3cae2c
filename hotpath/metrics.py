"""The core's Prometheus metrics: breakers, retries and Redis calls.

Label values are bounded (service names from the config, fixed outcome words). Hot-path code
resolves the labelled children it needs once, when a service or plugin is built, and never
calls ``.labels()`` per request. ``observability`` exports them with every other family.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

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
