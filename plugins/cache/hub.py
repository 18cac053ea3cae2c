"""One cache per worker, shared by every cached route: the local tier, the shared tier,
invalidation records, in-flight misses and background writes.

Coherence: an invalidation is a record (route, path prefix, time) written to Redis with
Redis time. Every worker polls the records (``sync_interval``) and treats any entry
stamped at or before a matching record as absent, wherever it was found, so an old entry
can be served by another worker for at most ``sync_interval`` after an invalidation. Entries
are stamped with the time their upstream request began, on the same clock, so a response
fetched while the invalidation happened is invalid too.

Failures: a Redis error or timeout makes a lookup a miss and skips a store; both are
counted in ``gatehouse_redis_errors`` and, for ``redis_backoff`` seconds, lookups stop
asking Redis while the local tier keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import orjson

from hotpath.metrics import REDIS_ERRORS
from plugins.cache.backends import ProcessTier, RedisTier, SharedTier
from plugins.cache.config import CacheSettings
from plugins.cache.entry import Entry, decode, encode
from plugins.cache.local import ENTRY, SPEC, LocalTier, Slot

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime

log: Final = logging.getLogger("gatehouse.cache")

HUB_KEY: Final = "cache"
# What a coalescing leader hands its followers: the entry and its variant key suffix.
Led = tuple[Entry, str] | None
LOG_EVERY: Final = 10.0
# The invalidation field that covers every route and path.
CLEAR_ALL: Final = orjson.dumps([None, ""]).decode()


class SharedClock:
    """Seconds on the shared tier's clock (Redis ``TIME``), estimated from the last poll."""

    __slots__ = ("_wall", "offset")

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.offset = 0.0

    def now(self) -> float:
        return self._wall() + self.offset

    def observe(self, shared_now: float, sent_at: float, received_at: float) -> None:
        self.offset = shared_now - (sent_at + received_at) / 2


class Invalidated(Exception):
    """Raised by ``CacheHub.invalidate`` when the shared tier could not record it."""


class CacheHub:
    def __init__(
        self,
        settings: CacheSettings,
        shared: SharedTier,
        *,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.local = LocalTier(settings.local_max_bytes, settings.local_max_entries, mono)
        self.clock = SharedClock(wall)
        self._mono = mono
        self._wall = wall
        # (route or None for all, path prefix, shared-clock time)
        self._records: tuple[tuple[str | None, str, float], ...] = ()
        self._version = "0"
        self._inflight: dict[str, asyncio.Future[Led]] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self._logged_at = -LOG_EVERY
        self._sync_task: asyncio.Task[None] | None = None
        self.route_ttls: dict[str, float] = {}
        self._errors = {
            op: REDIS_ERRORS.labels(op)
            for op in ("cache_lookup", "cache_store", "cache_store_skipped", "cache_sync", "cache_invalidate")
        }

    @classmethod
    def for_runtime(cls, runtime: WorkerRuntime, settings: CacheSettings) -> CacheHub:
        """The worker's hub, made (and hooked into startup/shutdown) on first use."""

        def make() -> CacheHub:
            state = runtime.state
            # The strategy is chosen once, here; nothing on the hot path asks which it is.
            tier: SharedTier = (
                RedisTier(state.redis, state.keys.feature("cache")) if state.kind == "redis" else ProcessTier()
            )
            hub = cls(settings, tier)
            runtime.on_startup(hub.start)
            runtime.on_shutdown(hub.stop)
            return hub

        return runtime.singleton(HUB_KEY, make)

    def mono(self) -> float:
        return self._mono()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self.shared.shared:
            await self.sync_once()
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop(), name="cache-sync")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
            self._sync_task = None
        if self._writes:
            # Give in-flight writes a moment; they are bounded by redis_timeout anyway.
            await asyncio.wait(self._writes, timeout=self.settings.redis_timeout * 2)
            for task in self._writes:
                task.cancel()

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_interval)
            await self.sync_once()

    async def sync_once(self) -> bool:
        sent = self._wall()
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                polled = await self.shared.poll(self._version)
        except Exception as exc:  # coredis raises ExceptionGroups and its own errors
            self._failed("cache_sync", exc, backoff=False)
            return False
        self.clock.observe(polled.now, sent, self._wall())
        if polled.records is not None:
            self._apply_records(polled.records)
            self._version = polled.version
        return True

    # -- invalidation ------------------------------------------------------------------

    @property
    def horizon(self) -> float:
        """How long an invalidation record matters: the longest TTL of any cached route."""
        return max(self.route_ttls.values(), default=60.0)

    def _apply_records(self, records: dict[str, float]) -> None:
        known = {(r, p) for r, p, _ in self._records}
        parsed: list[tuple[str | None, str, float]] = []
        for field, at in records.items():
            try:
                route, prefix = orjson.loads(field)
            except (orjson.JSONDecodeError, ValueError, TypeError):
                continue
            parsed.append((route, prefix, at))
            if (route, prefix) not in known:
                self.local.purge(route, prefix)
        self._records = tuple(parsed)

    def invalidated(self, route: str, path: str, stamped: float) -> bool:
        for r, prefix, at in self._records:
            if stamped <= at and (r is None or r == route) and path.startswith(prefix):
                return True
        return False

    async def invalidate(self, route: str | None, prefix: str) -> int:
        """Record an invalidation for every worker; returns local entries dropped here."""
        field = orjson.dumps([route, prefix]).decode()
        horizon_ms = int(self.horizon * 1000) + 1000
        try:
            async with asyncio.timeout(self.settings.redis_timeout * 5):
                at = await self.shared.invalidate(
                    field, horizon_ms, self.settings.max_invalidations, CLEAR_ALL
                )
        except Exception as exc:
            self._failed("cache_invalidate", exc, backoff=False)
            self.local.purge(route, prefix)
            raise Invalidated(f"the shared cache could not record the invalidation: {exc}") from None
        cutoff = at - self.horizon - 1.0
        kept = [rec for rec in self._records if rec[2] >= cutoff and (rec[0], rec[1]) != (route, prefix)]
        kept.append((route, prefix, at))
        if len(kept) > self.settings.max_invalidations:
            kept = [(None, "", at)]
        self._records = tuple(kept)
        return self.local.purge(route, prefix)

    # -- lookups -----------------------------------------------------------------------

    def fresh(self, slot: Slot) -> Entry | None:
        entry = slot.entry
        if entry is None:
            return None
        if self._records and self.invalidated(slot.route, slot.path, entry.stored_at):
            return None
        return entry

    def redis_usable(self) -> bool:
        return self.shared.shared and self._mono() >= self._down_until

    async def fetch(
        self,
        route: str,
        path: str,
        primary: str,
        tag: str,
        spec: tuple[str, ...] | None,
        variant_of: Callable[[tuple[str, ...]], tuple[str, str]],
        local_ttl: float,
    ) -> Entry | None:
        """Ask the shared tier; a found entry is kept locally for ``local_ttl``.

        ``variant_of(names)`` returns (local key suffix, shared-tier variant id) for the
        request's values of those headers.
        """
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                if spec is None:
                    spec_text, blob = await self.shared.lookup(tag)
                    if spec_text is None:
                        return None
                    spec = tuple(spec_text.split(",")) if spec_text else ()
                    if spec and local_ttl > 0:
                        self.local.put(primary, Slot(SPEC, route, path, self._mono() + local_ttl, vary=spec))
                if spec:
                    suffix, variant = variant_of(spec)
                    blob = await self.shared.get_variant(tag, variant)
                else:
                    suffix = ""
        except Exception as exc:
            self._failed("cache_lookup", exc)
            return None
        if blob is None:
            return None
        entry = decode(blob)
        if entry is None:
            return None
        remaining = entry.expires_at - self.clock.now()
        if remaining <= 0 or self.invalidated(route, path, entry.stored_at):
            return None
        if local_ttl > 0:
            expires = self._mono() + min(local_ttl, remaining)
            self.local.put(primary + suffix, Slot(ENTRY, route, path, expires, entry))
        return entry

    # -- coalescing --------------------------------------------------------------------

    def follow(self, key: str) -> asyncio.Future[Led] | None:
        return self._inflight.get(key)

    def lead(self, key: str) -> asyncio.Future[Led]:
        fut: asyncio.Future[Led] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        return fut

    def settle(self, key: str, fut: asyncio.Future[Led], led: Led) -> None:
        if not fut.done():
            fut.set_result(led)
        if self._inflight.get(key) is fut:
            del self._inflight[key]

    # -- stores ------------------------------------------------------------------------

    def store(
        self,
        route: str,
        path: str,
        primary: str,
        tag: str,
        suffix: str,
        variant: str,
        entry: Entry,
        local_ttl: float,
    ) -> None:
        """Keep ``entry`` locally now and write it to the shared tier in the background."""
        ttl = entry.expires_at - entry.stored_at
        keep = local_ttl if self.shared.shared else ttl
        keep = min(keep, ttl)
        if keep > 0:
            expires = self._mono() + keep
            if entry.vary:
                self.local.put(primary, Slot(SPEC, route, path, expires, vary=entry.vary))
            self.local.put(primary + suffix, Slot(ENTRY, route, path, expires, entry))
        if not self.shared.shared:
            return
        if len(self._writes) >= self.settings.max_pending_writes or not self.redis_usable():
            self._errors["cache_store_skipped"].inc()
            return
        ttl_ms = max(1, int((entry.expires_at - self.clock.now()) * 1000))
        task = asyncio.get_running_loop().create_task(
            self._write(tag, ",".join(entry.vary), variant, encode(entry), ttl_ms)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, tag: str, spec: str, variant: str, blob: bytes, ttl_ms: int) -> None:
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                await self.shared.store(tag, spec, variant, blob, ttl_ms)
        except Exception as exc:
            self._failed("cache_store", exc)

    def _failed(self, op: str, exc: BaseException, *, backoff: bool = True) -> None:
        self._errors[op].inc()
        now = self._mono()
        if backoff and self.settings.redis_backoff > 0:
            self._down_until = now + self.settings.redis_backoff
        # While Redis is down this fires on every poll: say it once per LOG_EVERY seconds.
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("cache: redis %s failed (serving without the shared tier): %s: %s",
                        op, type(exc).__name__, exc)
