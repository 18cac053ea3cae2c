"""The interface of the cache's shared tier.

Times are seconds on the shared clock (Redis ``TIME`` for Redis). Calls raise whatever the
backend raises; the hub applies timeouts, counts failures and degrades to pass-through.
"""

from __future__ import annotations

from typing import Protocol


class Invalidations:
    """A poll result: the shared clock's time, the records' version, and the records when
    the version changed (``None`` otherwise) as ``{field: time}``."""

    __slots__ = ("now", "records", "version")

    def __init__(self, now: float, version: str, records: dict[str, float] | None) -> None:
        self.now = now
        self.version = version
        self.records = records


class SharedTier(Protocol):
    # True when other workers share this tier (entries and invalidations must be fetched
    # and polled); False when the worker's own memory is the whole cache.
    shared: bool

    async def lookup(self, tag: str) -> tuple[str | None, bytes | None]:
        """(Vary spec or None if nothing is cached, entry blob when the spec is "")."""

    async def get_variant(self, tag: str, variant: str) -> bytes | None: ...

    async def store(self, tag: str, spec: str, variant: str, blob: bytes, ttl_ms: int) -> None: ...

    async def invalidate(self, field: str, horizon_ms: int, max_records: int, clear_all: str) -> float:
        """Record an invalidation; returns its time on the shared clock."""

    async def poll(self, version: str) -> Invalidations: ...
