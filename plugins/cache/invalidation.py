"""Cache invalidation, as the admin API calls it.

Exceptions (both carry a message fit for an API response):

- ``CacheNotConfigured``: no route in this configuration caches, or the named route does
  not (the admin API answers 404).
- ``Invalidated`` (from ``plugins.cache.hub``): Redis could not record the invalidation;
  this worker's tier was purged, the others were not (the admin API answers 503).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from plugins.cache.hub import HUB_KEY, CacheHub, Invalidated

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime


class CacheNotConfigured(LookupError):
    pass


class InvalidationResult(msgspec.Struct, frozen=True, kw_only=True):
    route: str | None
    prefix: str
    # Entries dropped from this worker's own tier. Other workers drop theirs on their
    # next poll, and entries in Redis are superseded immediately.
    local_entries_dropped: int
    shared: bool


async def invalidate(
    runtime: WorkerRuntime, *, route: str | None = None, prefix: str = "/"
) -> InvalidationResult:
    """Invalidate cached responses of ``route`` (None: every route) under path ``prefix``.

    ``prefix`` is matched against the normalized request path (``/api/users`` covers
    ``/api/users`` and ``/api/users/7?x=1``); ``"/"`` covers the whole route.
    """
    hub = runtime.get_singleton(HUB_KEY)
    if not isinstance(hub, CacheHub):
        raise CacheNotConfigured("no route has the cache plugin")
    if route is not None and route not in hub.route_ttls:
        cached = ", ".join(sorted(hub.route_ttls))
        raise CacheNotConfigured(f"route '{route}' does not cache (cached routes: {cached})")
    if not prefix.startswith("/"):
        raise ValueError("prefix must be a path starting with '/'")
    dropped = await hub.invalidate(route, prefix)
    return InvalidationResult(
        route=route, prefix=prefix, local_entries_dropped=dropped, shared=hub.shared.shared
    )


__all__ = ["CacheNotConfigured", "Invalidated", "InvalidationResult", "invalidate"]
