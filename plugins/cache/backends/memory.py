"""The in-process shared tier: nothing to share, so every call is a no-op.

Used when ``state.backend`` is memory. The worker's own tier (``LocalTier``) then holds
entries for their full TTL, and invalidation reaches the worker that performs it only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from plugins.cache.backends.base import Invalidations


class ProcessTier:
    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    async def lookup(self, tag: str) -> tuple[str | None, bytes | None]:
        return None, None

    async def get_variant(self, tag: str, variant: str) -> bytes | None:
        return None

    async def store(self, tag: str, spec: str, variant: str, blob: bytes, ttl_ms: int) -> None:
        return None

    async def invalidate(self, field: str, horizon_ms: int, max_records: int, clear_all: str) -> float:
        return self._clock()

    async def poll(self, version: str) -> Invalidations:
        return Invalidations(self._clock(), version, None)
