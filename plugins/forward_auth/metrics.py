"""The forward_auth plugin's metric families."""

from __future__ import annotations

from prometheus_client import Counter

DECISIONS = Counter(
    "gatehouse_forward_auth_decisions",
    "Forward-auth outcomes; outcome is allowed, denied, failed_open or failed_closed.",
    ("route", "outcome"),
)

CALLS = Counter(
    "gatehouse_forward_auth_calls",
    "Calls to the authorization service; result is allowed, denied, timeout or error.",
    ("route", "result"),
)

CACHE = Counter(
    "gatehouse_forward_auth_cache",
    "Where an answer came from without a call: hit (this worker), shared (Redis) or joined (a call in flight).",
    ("route", "result"),
)
