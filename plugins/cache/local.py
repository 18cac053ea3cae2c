"""The per-worker tier: a bounded LRU of entries, Vary specs and pass markers.

Bounded by entry count and by bytes. Lookups are one dict probe plus a monotonic-clock
check; the hot path of a cache hit never leaves this module. ``purge`` walks the whole
tier, which is fine for invalidations (rare) and never happens per request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from plugins.cache.entry import Entry

ENTRY: Final = 0
SPEC: Final = 1  # the Vary header names of a primary key; the entry lives under a variant key
PASS: Final = 2  # the last response for this key was uncacheable: skip coalescing for a while


class Slot:
    __slots__ = ("entry", "expires", "kind", "path", "route", "size", "vary")

    def __init__(
        self,
        kind: int,
        route: str,
        path: str,
        expires: float,
        entry: Entry | None = None,
        vary: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.route = route
        self.path = path
        self.expires = expires  # monotonic seconds
        self.entry = entry
        self.vary = vary
        self.size = entry.size if entry is not None else 128 + len(path) + sum(len(v) for v in vary)


class LocalTier:
    __slots__ = ("_bytes", "_clock", "_slots", "max_bytes", "max_entries")

    def __init__(self, max_bytes: int, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._clock = clock
        self._slots: OrderedDict[str, Slot] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Slot | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.expires <= self._clock():
            self._remove(key, slot)
            return None
        self._slots.move_to_end(key)
        return slot

    def put(self, key: str, slot: Slot) -> bool:
        """Keep ``slot`` (evicting the least recently used); False if it can never fit."""
        if slot.size > self.max_bytes or self.max_entries == 0:
            return False
        old = self._slots.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._slots[key] = slot
        self._bytes += slot.size
        while self._bytes > self.max_bytes or len(self._slots) > self.max_entries:
            _, evicted = self._slots.popitem(last=False)
            self._bytes -= evicted.size
        return True

    def drop(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            self._remove(key, slot)

    def purge(self, route: str | None, prefix: str) -> int:
        """Remove every slot of ``route`` (None: any) whose path starts with ``prefix``."""
        doomed = [
            k for k, s in self._slots.items()
            if (route is None or s.route == route) and s.path.startswith(prefix)
        ]
        for k in doomed:
            self._remove(k, self._slots[k])
        return len(doomed)

    def clear(self) -> None:
        self._slots.clear()
        self._bytes = 0

    def _remove(self, key: str, slot: Slot) -> None:
        del self._slots[key]
        self._bytes -= slot.size
