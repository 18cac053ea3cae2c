"""The in-process store: the same algorithms as the Lua scripts, on this process's clock.

``MemoryLimits`` decides with it when no Redis is configured (a single worker; the CLI refuses
several workers without Redis) and as the fail-open fallback while Redis is unavailable.
It mirrors ``lua/*.lua`` step by step (integer microseconds, same buckets, same GCRA), so
one conformance suite holds both to the same results. The clock is injectable.

Memory is bounded: state expires exactly as the Redis keys do, expired entries are swept
incrementally, and beyond ``max_keys`` the least recently used entries are dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from plugins.rate_limit.backends.base import LimitBackend
from plugins.rate_limit.limits import BucketLimit, CompiledLimit, Decision, WindowLimit
from plugins.rate_limit.policy import CostPlan

Clock = Callable[[], int]  # microseconds since the epoch


def system_clock() -> int:
    return time.time_ns() // 1000


class _Window:
    __slots__ = ("buckets", "expires", "oldest", "total")

    def __init__(self) -> None:
        self.total = 0
        self.oldest: int | None = None
        self.buckets: dict[int, int] = {}
        self.expires = 0


class _Bucket:
    __slots__ = ("d", "expires", "ts")

    def __init__(self, ts: int, d: int, expires: int) -> None:
        self.ts = ts
        self.d = d
        self.expires = expires


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class MemoryStore:
    def __init__(self, clock: Clock = system_clock, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._state: OrderedDict[str, _Window | _Bucket] = OrderedDict()
        self._ops = 0

    def __len__(self) -> int:
        return len(self._state)

    def decide(self, keys: Sequence[str], limits: Sequence[CompiledLimit], cost: int) -> Decision:
        now = self.clock()
        self._maintain(now)
        ok = True
        # Per limit: (limit, key, counted units or bucket deficit, current and lowest sub-window)
        looked: list[tuple[CompiledLimit, str, int, int, int]] = []
        for key, lim in zip(keys, limits, strict=True):
            if isinstance(lim, WindowLimit):
                total, cur, low = self._sw_trim(key, now, lim.bucket_us, lim.buckets)
                if total + cost > lim.limit:
                    ok = False
                looked.append((lim, key, total, cur, low))
            else:
                assert isinstance(lim, BucketLimit)
                d = self._tb_deficit(key, now, lim.rate)
                if d + cost * lim.period_us > lim.burst * lim.period_us:
                    ok = False
                looked.append((lim, key, d, 0, 0))
        idx, limit, remaining, reset, retry = 0, 0, -1, 0, -1
        if ok:
            for j, (lim, key, v, cur, low) in enumerate(looked):
                if isinstance(lim, WindowLimit):
                    rs = self._sw_commit(key, now, lim.bucket_us, lim.buckets, cur, low, v, cost)
                    r = lim.limit - v - cost
                else:
                    assert isinstance(lim, BucketLimit)
                    d = v + cost * lim.period_us
                    rs = self._tb_commit(key, now, lim.rate, d)
                    r = (lim.burst * lim.period_us - d) // lim.period_us
                if remaining < 0 or r < remaining or (r == remaining and rs > reset):
                    idx, limit, remaining, reset = j, lim.capacity, r, rs
            retry = 0
        else:
            for j, (lim, key, v, cur, low) in enumerate(looked):
                if isinstance(lim, WindowLimit):
                    if v + cost <= lim.limit:
                        continue
                    w, rs = self._sw_waits(key, now, lim.bucket_us, lim.buckets, low, cur, v + cost - lim.limit)
                    rem = lim.limit - v
                else:
                    assert isinstance(lim, BucketLimit)
                    full = lim.burst * lim.period_us
                    if v + cost * lim.period_us <= full:
                        continue
                    w = _ceil_div(v + cost * lim.period_us - full, lim.rate)
                    rs = _ceil_div(v, lim.rate)
                    rem = (full - v) // lim.period_us
                if w > retry:
                    idx, limit, remaining, reset, retry = j, lim.capacity, rem, rs, w
        return Decision(
            ok, idx, limit, remaining, _ceil_div(reset, 1000), _ceil_div(retry, 1000), now // 1000
        )

    def peek(self, keys: Sequence[str], limits: Sequence[CompiledLimit]) -> list[tuple[int, int, int, int]]:
        """Per limit: (limit, remaining, reset_ms, ttl_ms or -2 when absent); consumes nothing."""
        now = self.clock()
        out: list[tuple[int, int, int, int]] = []
        for key, lim in zip(keys, limits, strict=True):
            st = self._live(key, now)
            ttl = _ceil_div(st.expires - now, 1000) if st is not None else -2
            if isinstance(lim, WindowLimit):
                cur = now // lim.bucket_us
                low = cur - lim.buckets + 1
                w = st if isinstance(st, _Window) else None
                used = sum(c for i, c in w.buckets.items() if low <= i <= cur) if w else 0
                _, rs = self._sw_waits(key, now, lim.bucket_us, lim.buckets, low, cur, 0)
                out.append((lim.limit, lim.limit - used, _ceil_div(rs, 1000), ttl))
            else:
                assert isinstance(lim, BucketLimit)
                d = self._tb_deficit(key, now, lim.rate)
                remaining = (lim.burst * lim.period_us - d) // lim.period_us
                out.append((lim.burst, remaining, _ceil_div(_ceil_div(d, lim.rate), 1000), ttl))
        return out

    def delete(self, keys: Sequence[str]) -> int:
        n = 0
        for key in keys:
            if self._state.pop(key, None) is not None:
                n += 1
        return n

    def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self._state if k.startswith(prefix)]
        for k in doomed:
            del self._state[k]
        return len(doomed)

    def keys(self) -> list[str]:
        return list(self._state)

    # -- state -----------------------------------------------------------------------------

    def _live(self, key: str, now: int) -> _Window | _Bucket | None:
        st = self._state.get(key)
        if st is None:
            return None
        if st.expires <= now:
            del self._state[key]
            return None
        self._state.move_to_end(key)
        return st

    def _maintain(self, now: int) -> None:
        # Sweep a few of the least recently used entries per call: expired state goes
        # without a timer, and the key count stays bounded.
        self._ops += 1
        state = self._state
        if self._ops & 15 == 0:
            for _ in range(8):
                if not state:
                    break
                key, st = next(iter(state.items()))
                if st.expires > now:
                    break
                del state[key]
        while len(state) >= self.max_keys:
            state.popitem(last=False)

    def _sw_trim(self, key: str, now: int, bucket: int, span: int) -> tuple[int, int, int]:
        cur = now // bucket
        low = cur - span + 1
        st = self._live(key, now)
        if not isinstance(st, _Window):
            return 0, cur, low
        if st.oldest is not None and st.oldest < low:
            if low - st.oldest >= span:
                del self._state[key]
                return 0, cur, low
            for i in range(st.oldest, low):
                st.total -= st.buckets.pop(i, 0)
            st.oldest = low
        return st.total, cur, low

    def _sw_waits(
        self, key: str, now: int, bucket: int, span: int, low: int, cur: int, need: int
    ) -> tuple[int, int]:
        st = self._state.get(key)
        freed, retry, newest = 0, -1, None
        if isinstance(st, _Window) and st.expires > now:
            for i in range(low, cur + 1):
                c = st.buckets.get(i, 0)
                if c > 0:
                    newest = i
                    freed += c
                    if retry < 0 and freed >= need:
                        retry = (i + span) * bucket - now
        reset = (newest + span) * bucket - now if newest is not None else 0
        return max(retry, 0), reset

    def _sw_commit(self, key: str, now: int, bucket: int, span: int, cur: int, low: int, total: int,
                   cost: int) -> int:
        st = self._state.get(key)
        if not isinstance(st, _Window):
            st = _Window()
            self._state[key] = st
        st.buckets[cur] = st.buckets.get(cur, 0) + cost
        st.total = total + cost
        st.oldest = low
        ttl = (cur + span) * bucket - now
        # Redis PEXPIRE rounds up to whole milliseconds; so does this.
        st.expires = now + _ceil_div(ttl, 1000) * 1000
        return ttl

    def _tb_deficit(self, key: str, now: int, rate: int) -> int:
        st = self._live(key, now)
        if not isinstance(st, _Bucket):
            return 0
        return max(0, st.d - (now - st.ts) * rate)

    def _tb_commit(self, key: str, now: int, rate: int, d: int) -> int:
        ttl = _ceil_div(d, rate)
        expires = now + _ceil_div(ttl, 1000) * 1000
        st = self._state.get(key)
        if isinstance(st, _Bucket):
            st.ts, st.d, st.expires = now, d, expires
        else:
            self._state[key] = _Bucket(now, d, expires)
        return ttl


class MemoryLimits(LimitBackend):
    """Every decision in this process: exact for one worker (the CLI refuses several)."""

    kind = "memory"

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def decide(self, keys: Sequence[str], plan: CostPlan) -> Decision | None:
        return self.store.decide(keys, plan.limits, plan.cost)

    async def usage(self, keys: Sequence[str], limits: tuple[CompiledLimit, ...]) -> tuple[
            list[tuple[int, int, int, int]], int]:
        return self.store.peek(keys, limits), self.store.clock() // 1000

    async def forget(self, keys: list[str]) -> int:
        return self.store.delete(keys)

    async def forget_prefix(self, prefix: str, pattern: str) -> int:
        return self.store.delete_prefix(prefix)

