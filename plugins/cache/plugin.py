"""The ``cache`` plugin: per-route response caching for GET and HEAD.

Request phase: build the key (route, normalized path, sorted query, the caller's hashed
identity unless the route is ``shared``), then look in the worker's own tier, then in the
shared tier (Redis). A hit is answered here. A miss either waits for an identical miss
already in flight in this worker (coalescing) or becomes its leader and goes upstream.

Response phase: a storable response (see ``policy``) is captured by a ``BodyTap`` and
stored when its body completes; a truncated body, an error status or an oversized body is
never stored. HEAD is answered from GET entries but never stored (it has no body).
"""

from __future__ import annotations

import asyncio
import hashlib
from time import perf_counter
from typing import TYPE_CHECKING, ClassVar, Final

from hotpath.context import Header, RequestContext, StateKey
from hotpath.deferred import DeferredCounter, deferred
from hotpath.plugin import BodyTap, Plugin, PluginSetup, Verdict
from hotpath.responses import LocalResponse, ResponseHead
from plugins.cache.backends.redis import NO_VARY
from plugins.cache.config import CacheConfig, CacheSettings
from plugins.cache.entry import Entry
from plugins.cache.hub import CacheHub, Led
from plugins.cache.local import ENTRY, PASS, SPEC, Slot
from plugins.cache.metrics import CACHE_REQUESTS, CACHE_STORES
from plugins.cache.policy import judge, sorted_query

if TYPE_CHECKING:
    from prometheus_client import Counter

OUTCOME: Final = "cache"
X_CACHE_HIT: Final = (b"x-cache", b"HIT")
X_CACHE_MISS: Final = (b"x-cache", b"MISS")
# Never stored: per-request identifiers, and what the cache itself adds on a hit.
_NOT_STORED: Final = frozenset({b"x-request-id", b"x-correlation-id", b"x-cache", b"age"})
_AUTHORIZATION: Final = b"authorization"
_HOST_HEADERS: Final = (b"host", b"x-forwarded-host")
_RANGE: Final = b"range"



def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=16).hexdigest()


def variant_of(ctx: RequestContext, names: tuple[str, ...]) -> tuple[str, str]:
    """(local key suffix, shared-tier variant id) from the request's values of ``names``."""
    values = []
    for name in names:
        nb = name.encode("latin-1")
        values.append(b", ".join(v for k, v in ctx.headers if k == nb).decode("latin-1").strip())
    joined = "\x00".join(values)
    return "\x01" + joined, digest(joined)


class _Miss:
    """Per-request state of a miss, from the request phase to the body's end."""

    __slots__ = ("fut", "key", "primary", "tag")

    def __init__(self, primary: str, tag: str, key: str, fut: asyncio.Future[Led] | None) -> None:
        self.primary = primary
        self.tag = tag
        self.key = key
        self.fut = fut


# A miss this worker leads: from the request phase to the end of the response body.
MISS: Final = StateKey[_Miss]("cache.miss")


class CachePlugin(Plugin[CacheConfig]):
    name: ClassVar[str] = "cache"
    # After auth (identity is part of the key) and rate limiting (a hit still counts).
    priority: ClassVar[int] = 100
    config_type: ClassVar[type[CacheConfig]] = CacheConfig
    settings_type: ClassVar[type[CacheSettings]] = CacheSettings

    def __init__(self, config: CacheConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, CacheSettings) else CacheSettings()
        self.hub = CacheHub.for_runtime(setup.runtime, settings)
        self.hub.route_ttls[setup.route.name] = config.ttl
        self._route = setup.route.name
        self._prefix = setup.route.name + "\x00"
        self._shared = config.shared
        self._statuses = frozenset(config.statuses)
        self._local_ttl = config.local_ttl
        self._coalesce = config.coalesce
        self._wait = config.coalesce_timeout
        labels = setup.route.name
        # One lookup per request: counted in process, published in batches.
        self._hits = deferred(CACHE_REQUESTS.labels(labels, "hit"))
        self._misses = deferred(CACHE_REQUESTS.labels(labels, "miss"))
        self._bypasses = deferred(CACHE_REQUESTS.labels(labels, "bypass"))
        self._coalesced = deferred(CACHE_REQUESTS.labels(labels, "coalesced"))
        self._stores: Counter = CACHE_STORES.labels(labels)

    # -- request phase -----------------------------------------------------------------

    async def on_request(self, ctx: RequestContext) -> Verdict:
        method = ctx.method
        if method != "GET" and method != "HEAD":
            return None
        who = ""
        ident = ctx.identity
        host = b""
        for k, v in ctx.headers:
            # A ranged request wants part of a body; an Authorization header on a route
            # that established no identity may select a per-caller response.
            if k == _RANGE or (k == _AUTHORIZATION and ident is None and not self._shared):
                self._bypass(ctx)
                return None
            if k in _HOST_HEADERS:
                # The upstream sees the host (as X-Forwarded-Host) and may build redirects or
                # absolute URLs from it: a response for one host must never serve another.
                host += v + b"\x00"
        if ident is not None and not self._shared:
            who = digest(ident.subject)
        q = ctx.query
        path = ctx.path
        primary = (
            f"{self._prefix}{path}\x00{sorted_query(q).decode('latin-1') if q else ''}\x00{who}"
            f"\x00{host.decode('latin-1')}"
        )
        hub = self.hub
        spec: tuple[str, ...] | None = None
        slot = hub.local.get(primary)
        if slot is not None:
            kind = slot.kind
            if kind == ENTRY:
                entry = hub.fresh(slot)
                if entry is not None:
                    return self._hit(ctx, entry, self._hits, "hit")
            elif kind == SPEC:
                spec = slot.vary
                vslot = hub.local.get(primary + variant_of(ctx, spec)[0])
                if vslot is not None and (entry := hub.fresh(vslot)) is not None:
                    return self._hit(ctx, entry, self._hits, "hit")
            elif kind == PASS:
                self._bypass(ctx)
                return None
        tag = digest(primary)
        if hub.redis_usable():
            entry = await hub.fetch(
                self._route, path, primary, tag, spec, lambda names: variant_of(ctx, names), self._local_ttl
            )
            if entry is not None:
                return self._hit(ctx, entry, self._hits, "hit")
        if method == "HEAD":
            # Answered from GET entries, never stored: a HEAD response has no body.
            self._count_miss(ctx)
            return None
        fut: asyncio.Future[Led] | None = None
        if self._coalesce:
            leading = hub.follow(primary)
            if leading is not None:
                led = await self._follow(leading)
                if led is not None:
                    entry, suffix = led
                    if not entry.vary or variant_of(ctx, entry.vary)[0] == suffix:
                        return self._hit(ctx, entry, self._coalesced, "coalesced")
            else:
                fut = hub.lead(primary)
        ctx.put(MISS, _Miss(primary, tag, primary, fut))
        self._count_miss(ctx)
        return None

    async def _follow(self, leading: asyncio.Future[Led]) -> Led:
        try:
            # shield: a follower giving up must not cancel what the others wait on.
            return await asyncio.wait_for(asyncio.shield(leading), self._wait)
        except TimeoutError:
            return None

    def _hit(self, ctx: RequestContext, entry: Entry, counter: DeferredCounter, status: str) -> LocalResponse:
        counter.inc()
        ctx.report(OUTCOME, status)
        age = int(self.hub.clock.now() - entry.stored_at)
        headers = [*entry.headers, X_CACHE_HIT, (b"age", str(age if age > 0 else 0).encode())]
        return LocalResponse(entry.status, headers, entry.body)

    def _bypass(self, ctx: RequestContext) -> None:
        self._bypasses.inc()
        ctx.report(OUTCOME, "bypass")
        ctx.response_headers.append(X_CACHE_MISS)

    def _count_miss(self, ctx: RequestContext) -> None:
        self._misses.inc()
        ctx.report(OUTCOME, "miss")
        ctx.response_headers.append(X_CACHE_MISS)

    # -- response phase ----------------------------------------------------------------

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        miss = ctx.get(MISS)
        if miss is None:
            return None
        cfg = self.config
        if head.status not in self._statuses:
            self._release(miss, None)  # errors are never stored, and leave no pass marker
            return None
        # Judge and store what the upstream said, not what plugins add per request (CORS's
        # Vary: Origin, rate-limit headers, X-Cache itself).
        per_request = tuple(ctx.response_headers)
        headers = _upstream_headers(head.headers, per_request)
        verdict = judge(headers, cfg.ttl, cfg.respect_max_age, cfg.max_vary_headers)
        declared = head.get(b"content-length")
        too_big = declared is not None and (not declared.isdigit() or int(declared) > cfg.max_entry_bytes)
        if verdict.reason is not None or too_big:
            self._mark_pass(miss, ctx.path)
            self._release(miss, None)
            return None
        suffix, variant = variant_of(ctx, verdict.vary) if verdict.vary else ("", NO_VARY)
        return _Capture(self, ctx, miss, head, per_request, verdict.ttl, verdict.vary, suffix, variant)

    def on_log(self, ctx: RequestContext) -> None:
        # The request may have ended before a response (upstream error, client gone):
        # followers must not wait for a leader that will never store anything.
        miss = ctx.get(MISS)
        if miss is not None and miss.fut is not None and not miss.fut.done():
            self._release(miss, None)

    def _release(self, miss: _Miss, led: Led) -> None:
        if miss.fut is not None:
            self.hub.settle(miss.key, miss.fut, led)

    def _mark_pass(self, miss: _Miss, path: str) -> None:
        if self.config.pass_ttl > 0:
            expires = self.hub.mono() + self.config.pass_ttl
            self.hub.local.put(miss.primary, Slot(PASS, self._route, path, expires))

    def _store(self, ctx: RequestContext, miss: _Miss, entry: Entry, suffix: str, variant: str) -> None:
        self.hub.store(self._route, ctx.path, miss.primary, miss.tag, suffix, variant, entry, self._local_ttl)
        self._stores.inc()
        self._release(miss, (entry, suffix))


def _upstream_headers(headers: list[Header], per_request: tuple[Header, ...]) -> tuple[Header, ...]:
    """``headers`` without those never stored, and without one occurrence of each header
    the gateway added for this request.

    By value, not by identity: compiled code (hotpath/native) holds these tuples unboxed, so
    ``id()`` of one is the address of a temporary copy, which the next copy reuses.
    """
    if not per_request:
        return tuple(h for h in headers if h[0] not in _NOT_STORED)
    pending: dict[Header, int] = {}
    for h in per_request:
        pending[h] = pending.get(h, 0) + 1
    kept: list[Header] = []
    for h in headers:
        if h[0] in _NOT_STORED:
            continue
        left = pending.get(h, 0)
        if left:
            pending[h] = left - 1
            continue
        kept.append(h)
    return tuple(kept)


class _Capture(BodyTap):
    """Buffers a storable body up to ``max_entry_bytes``; stores it if it completes."""

    __slots__ = ("_ctx", "_head", "_limit", "_miss", "_parts", "_per_request", "_plugin", "_size",
                 "_suffix", "_ttl", "_variant", "_vary")

    def __init__(
        self,
        plugin: CachePlugin,
        ctx: RequestContext,
        miss: _Miss,
        head: ResponseHead,
        per_request: tuple[Header, ...],
        ttl: float,
        vary: tuple[str, ...],
        suffix: str,
        variant: str,
    ) -> None:
        self._plugin = plugin
        self._ctx = ctx
        self._miss = miss
        # The head as later response hooks leave it (CORS strips the upstream's own
        # Access-Control-* headers after this plugin has run), read when the body is done.
        self._head = head
        self._per_request = per_request
        self._ttl = ttl
        self._vary = vary
        self._suffix = suffix
        self._variant = variant
        self._limit = plugin.config.max_entry_bytes
        self._parts: list[bytes] | None = []
        self._size = 0

    def _stored_headers(self) -> tuple[Header, ...]:
        return _upstream_headers(self._head.headers, self._per_request)

    def feed(self, chunk: bytes) -> None:
        parts = self._parts
        if parts is None:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self._parts = None  # too large: stop buffering, stream on untouched
            return
        parts.append(chunk)

    def finish(self, complete: bool) -> None:
        plugin, miss, parts = self._plugin, self._miss, self._parts
        self._parts = None
        if not complete or parts is None:
            if complete:
                plugin._mark_pass(miss, self._ctx.path)  # complete but too large
            plugin._release(miss, None)
            return
        now = plugin.hub.clock.now()
        entry = Entry(
            status=self._head.status,
            headers=self._stored_headers(),
            body=parts[0] if len(parts) == 1 else b"".join(parts),
            # Stamped with the time the request began: an invalidation that happened while
            # this response was in flight must cover it.
            stored_at=now - (perf_counter() - self._ctx.started),
            expires_at=now + self._ttl,
            vary=self._vary,
        )
        plugin._store(self._ctx, miss, entry, self._suffix, self._variant)
