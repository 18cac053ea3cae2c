from __future__ import annotations

import asyncio

import pytest

from plugins.cache.backends import ProcessTier
from plugins.cache.config import CacheSettings
from plugins.cache.entry import Entry
from plugins.cache.hub import CacheHub


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_hub(max_invalidations: int = 1000) -> tuple[CacheHub, Clock, Clock]:
    mono, wall = Clock(100.0), Clock(1_700_000_000.0)
    hub = CacheHub(CacheSettings(max_invalidations=max_invalidations), ProcessTier(wall), mono=mono, wall=wall)
    hub.route_ttls["r"] = 60
    return hub, mono, wall


def stamped(at: float) -> Entry:
    return Entry(status=200, headers=(), body=b"b", stored_at=at, expires_at=at + 60)


async def test_invalidation_covers_entries_stamped_before_it_only() -> None:
    hub, _, wall = make_hub()
    hub.store("r", "/users/1", "k1", "t1", "", "_", stamped(wall.t - 1), 2.0)
    dropped = await hub.invalidate("r", "/users")
    assert dropped == 1
    assert hub.invalidated("r", "/users/1", wall.t - 1)
    assert hub.invalidated("r", "/users/1", wall.t)  # stamped at the same instant: covered
    assert not hub.invalidated("r", "/users/1", wall.t + 0.001)
    assert not hub.invalidated("r", "/orders/1", wall.t - 1)
    assert not hub.invalidated("other", "/users/1", wall.t - 1)


async def test_route_wide_and_global_invalidation() -> None:
    hub, _, wall = make_hub()
    await hub.invalidate(None, "/")
    assert hub.invalidated("any-route", "/x", wall.t - 5)


async def test_too_many_records_collapse_into_one_that_covers_everything() -> None:
    hub, _, wall = make_hub(max_invalidations=3)
    for i in range(4):
        wall.t += 1
        await hub.invalidate("r", f"/p{i}")
    assert hub.invalidated("elsewhere", "/anything", wall.t - 0.5)


async def test_memory_backend_keeps_entries_for_the_full_ttl() -> None:
    hub, mono, wall = make_hub()
    entry = stamped(wall.t)
    hub.store("r", "/a", "k", "t", "", "_", entry, 2.0)  # local_ttl is for the Redis tier only
    mono.t += 30
    slot = hub.local.get("k")
    assert slot is not None and hub.fresh(slot) == entry
    mono.t += 31
    assert hub.local.get("k") is None


async def test_coalescing_hands_the_leaders_result_to_followers() -> None:
    hub, _, wall = make_hub()
    fut = hub.lead("k")
    assert hub.follow("k") is fut
    waiter = asyncio.ensure_future(asyncio.shield(fut))
    hub.settle("k", fut, (stamped(wall.t), ""))
    assert (await waiter) is not None
    assert hub.follow("k") is None


async def test_sync_tracks_the_shared_clock() -> None:
    hub, _, wall = make_hub()
    assert await hub.sync_once()
    assert hub.clock.now() == pytest.approx(wall.t)
