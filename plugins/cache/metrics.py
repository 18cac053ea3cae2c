"""The response cache's metric families."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_REQUESTS = Counter(
    "gatehouse_cache_requests",
    "Cache lookups; result is hit, miss, bypass or coalesced.",
    ("route", "result"),
)

CACHE_STORES = Counter("gatehouse_cache_stores", "Responses written to the cache.", ("route",))
