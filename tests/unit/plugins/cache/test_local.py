from __future__ import annotations

from plugins.cache.entry import Entry, decode, encode
from plugins.cache.local import ENTRY, PASS, LocalTier, Slot


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def entry(body: bytes = b"x") -> Entry:
    return Entry(status=200, headers=((b"content-type", b"text/plain"),), body=body, stored_at=1.0, expires_at=61.0)


def test_entries_expire_on_the_injected_clock() -> None:
    clock = Clock()
    tier = LocalTier(1 << 20, 100, clock)
    tier.put("k", Slot(ENTRY, "r", "/a", clock.t + 2, entry()))
    assert tier.get("k") is not None
    clock.t += 2
    assert tier.get("k") is None
    assert len(tier) == 0 and tier.bytes == 0


def test_least_recently_used_is_evicted_by_count_and_by_bytes() -> None:
    clock = Clock()
    tier = LocalTier(1 << 20, 2, clock)
    for k in "abc":
        tier.put(k, Slot(ENTRY, "r", "/" + k, clock.t + 60, entry()))
        tier.get("a")  # keep 'a' hot
    assert tier.get("a") is not None and tier.get("b") is None and tier.get("c") is not None
    small = LocalTier(3000, 100, clock)
    for k in "abc":
        small.put(k, Slot(ENTRY, "r", "/" + k, clock.t + 60, entry(b"y" * 1000)))
    assert small.bytes <= 3000
    assert small.get("a") is None and small.get("c") is not None


def test_an_entry_larger_than_the_budget_is_refused() -> None:
    tier = LocalTier(500, 10, Clock())
    assert not tier.put("k", Slot(ENTRY, "r", "/", 2000.0, entry(b"z" * 1000)))
    assert len(tier) == 0


def test_purge_by_route_and_prefix() -> None:
    clock = Clock()
    tier = LocalTier(1 << 20, 100, clock)
    tier.put("1", Slot(ENTRY, "r1", "/users/7", clock.t + 60, entry()))
    tier.put("2", Slot(ENTRY, "r1", "/orders/1", clock.t + 60, entry()))
    tier.put("3", Slot(PASS, "r2", "/users/8", clock.t + 60))
    assert tier.purge("r1", "/users") == 1
    assert tier.purge(None, "/users") == 1
    assert tier.get("2") is not None and len(tier) == 1


def test_wire_form_round_trips_and_rejects_garbage() -> None:
    e = Entry(status=203, headers=((b"a", b"b"),), body=b"\x00\xff", stored_at=5.5, expires_at=9.0, vary=("accept",))
    assert decode(encode(e)) == e
    assert decode(b"\x93garbage") is None
