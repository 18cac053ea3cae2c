"""The cache plugin's configuration: per route (``routes[].plugins.cache``) and global
(``plugins.cache``). Compiled once; bounds are enforced by msgspec at load time."""

from __future__ import annotations

from typing import Annotated

import msgspec

from hotpath.structs import Strict

MiB = 1024 * 1024

# Statuses RFC 9111 calls heuristically cacheable, minus the error classes: the cache
# never stores an error, so 4xx/5xx are refused even when listed.
DEFAULT_STATUSES = (200, 203, 204, 300, 301, 308)


class CacheConfig(Strict, frozen=True, kw_only=True):
    # Longest time an entry is served; upstream max-age / s-maxage can only shorten it.
    ttl: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    # The response is the same for every caller: leave the caller's identity out of the
    # key even when an auth plugin identified them.
    shared: bool = False
    statuses: tuple[Annotated[int, msgspec.Meta(ge=200, le=399)], ...] = DEFAULT_STATUSES
    # Lower the TTL to the upstream's s-maxage (or max-age) when it is shorter.
    respect_max_age: bool = True
    # Larger bodies stream through untouched and are never buffered.
    max_entry_bytes: Annotated[int, msgspec.Meta(ge=0, le=64 * MiB)] = 1 * MiB
    # Responses whose Vary names more headers than this are not stored.
    max_vary_headers: Annotated[int, msgspec.Meta(ge=0, le=32)] = 8
    # Concurrent misses for one key wait for the first one's response instead of each
    # going upstream; a follower waits at most coalesce_timeout, then goes upstream.
    coalesce: bool = True
    coalesce_timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0
    # How long a worker keeps an entry in its own memory before asking Redis again
    # (Redis backend only; 0 turns the per-worker tier off for this route).
    local_ttl: Annotated[float, msgspec.Meta(ge=0, le=3_600)] = 2.0
    # After an uncacheable response (no-store, private, Set-Cookie, Vary: *, too large),
    # requests for the key skip coalescing for this long ("hit-for-pass").
    pass_ttl: Annotated[float, msgspec.Meta(ge=0, le=3_600)] = 5.0

    def __post_init__(self) -> None:
        if not self.statuses:
            raise ValueError("statuses: list at least one status to cache")


class CacheSettings(Strict, frozen=True, kw_only=True):
    # Per-worker tier bounds, across every cached route.
    local_max_bytes: Annotated[int, msgspec.Meta(ge=0, le=16 * 1024 * MiB)] = 64 * MiB
    local_max_entries: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 10_000
    # Each worker polls Redis this often for invalidations made by other workers (one
    # small script call); it bounds how long another worker may serve an invalidated entry.
    sync_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.25
    # Timeout of every cache Redis call. A lookup that fails is a miss; a store that fails
    # is skipped. Both are counted in gatehouse_redis_errors.
    redis_timeout: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.1
    # After a Redis failure, lookups skip Redis this long instead of each waiting out a
    # timeout (the per-worker tier keeps serving).
    redis_backoff: Annotated[float, msgspec.Meta(ge=0, le=300)] = 1.0
    # Redis writes run in the background; beyond this many pending, new ones are skipped.
    max_pending_writes: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    # Invalidation records beyond this many collapse into one that clears everything.
    max_invalidations: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1_000
