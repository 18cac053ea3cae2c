"""The Redis shared tier (standalone or Cluster).

Key layout, all under ``<prefix>:v<version>:cache`` (``SharedState.keys``):

- ``{<h>}:s``: the Vary spec of primary key hash ``h`` ("" when the response has no Vary);
- ``{<h>}:e:<v>``: the entry for variant hash ``v`` (``_`` without Vary);
- ``{inv}:t``: invalidation records (hash: field -> Redis-time microseconds, plus ``~v``).

Each lookup and store touches one hash tag, hence one Cluster slot. Every key has a TTL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.cache.backends.base import Invalidations

_HERE = Path(__file__).parent
NO_VARY = "_"


def _script(client: Any, name: str) -> Any:
    return client.register_script((_HERE / f"{name}.lua").read_text())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisTier:
    shared = True

    def __init__(self, client: Any, base: str) -> None:
        self._client = client
        self._base = base
        self._inv_key = f"{base}:{{inv}}:t"
        self._lookup = _script(client, "lookup")
        self._store = _script(client, "store")
        self._invalidate = _script(client, "invalidate")
        self._poll = _script(client, "sync")

    def spec_key(self, tag: str) -> str:
        return f"{self._base}:{{{tag}}}:s"

    def entry_key(self, tag: str, variant: str) -> str:
        return f"{self._base}:{{{tag}}}:e:{variant}"

    async def lookup(self, tag: str) -> tuple[str | None, bytes | None]:
        reply = await self._lookup(keys=[self.spec_key(tag), self.entry_key(tag, NO_VARY)])
        if not reply:
            return None, None
        spec = _text(reply[0])
        blob = reply[1] if len(reply) > 1 else None
        return spec, blob

    async def get_variant(self, tag: str, variant: str) -> bytes | None:
        blob: bytes | None = await self._client.get(self.entry_key(tag, variant))
        return blob

    async def store(self, tag: str, spec: str, variant: str, blob: bytes, ttl_ms: int) -> None:
        await self._store(keys=[self.spec_key(tag), self.entry_key(tag, variant)], args=[spec, blob, ttl_ms])

    async def invalidate(self, field: str, horizon_ms: int, max_records: int, clear_all: str) -> float:
        args = [field, horizon_ms, max_records, clear_all]
        now_us = await self._invalidate(keys=[self._inv_key], args=args)
        return int(now_us) / 1e6

    async def poll(self, version: str) -> Invalidations:
        reply = await self._poll(keys=[self._inv_key], args=[version])
        now = int(reply[0]) / 1e6
        current = _text(reply[1])
        if len(reply) < 3:
            return Invalidations(now, current, None)
        flat = reply[2]
        records = {
            _text(flat[i]): int(flat[i + 1]) / 1e6 for i in range(0, len(flat), 2) if _text(flat[i]) != "~v"
        }
        return Invalidations(now, current, records)
