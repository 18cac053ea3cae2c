"""Limits compiled into the integers the algorithms use, and the result of a decision.

Two kinds of limit, each a class with named fields: ``WindowLimit`` (a sliding window of
``buckets`` sub-windows of ``bucket_us``) and ``BucketLimit`` (a token bucket of ``burst``
tokens refilling ``rate`` per ``period_us``). ``params`` gives the four integers the Lua
scripts receive per limit (see ``lua/decide.lua``). The key suffix holds only what the
stored state depends on, so a tier change that keeps a window keeps its usage, and one that
changes a refill rate starts a fresh bucket.
"""

from __future__ import annotations

import math
from typing import Final

from plugins.rate_limit.config import LimitConfig, SlidingWindow, TierConfig, TokenBucket

# The kind numbers the scripts read.
SLIDING: Final = 1
BUCKET: Final = 2
US: Final = 1_000_000
# Lua numbers are doubles: keep every product the scripts form an exact integer.
MAX_EXACT: Final = 2**52
MIN_BUCKET_US: Final = 1000
AUTO_PRECISION: Final = 60


class CompiledLimit:
    """What every limit has: a name, its key suffix, its size, and its script integers."""

    __slots__ = ("capacity", "name", "quota", "suffix", "window_s")

    def __init__(self, name: str, capacity: int, suffix: str, window_us: int) -> None:
        self.name = name
        # The most one request may cost and ever be admitted.
        self.capacity = capacity
        self.suffix = suffix
        # For RateLimit-Policy: "quota units per window seconds".
        self.quota = capacity
        self.window_s = max(1, math.ceil(window_us / US))

    def params(self) -> tuple[int, int, int, int]:
        """(kind, and three numbers) as the scripts read them."""
        raise NotImplementedError

    def split(self, workers: int) -> CompiledLimit:
        """This limit's share for one of ``workers`` processes deciding alone."""
        raise NotImplementedError


class WindowLimit(CompiledLimit):
    """At most ``limit`` units in any window of ``buckets - 1`` sub-windows of ``bucket_us``."""

    __slots__ = ("bucket_us", "buckets", "limit")

    def __init__(self, name: str, limit: int, bucket_us: int, buckets: int) -> None:
        # ``buckets`` counts the window's sub-windows plus the one it starts in.
        super().__init__(name, limit, f"w{bucket_us}x{buckets}", bucket_us * (buckets - 1))
        self.limit = limit
        self.bucket_us = bucket_us
        self.buckets = buckets

    def params(self) -> tuple[int, int, int, int]:
        return (SLIDING, self.limit, self.bucket_us, self.buckets)

    def split(self, workers: int) -> CompiledLimit:
        if workers <= 1:
            return self
        return WindowLimit(self.name, -(-self.limit // workers), self.bucket_us, self.buckets)

    def __repr__(self) -> str:
        return f"WindowLimit({self.name}: {self.limit} per {self.buckets - 1} x {self.bucket_us} us)"


class BucketLimit(CompiledLimit):
    """A token bucket holding ``burst`` tokens, refilling ``rate`` tokens per ``period_us``."""

    __slots__ = ("burst", "period_us", "rate")

    def __init__(self, name: str, burst: int, period_us: int, rate: int) -> None:
        # Window: the time to refill a full bucket.
        super().__init__(name, burst, f"b{period_us}r{rate}", -(-burst * period_us // rate))
        self.burst = burst
        self.period_us = period_us
        self.rate = rate

    def params(self) -> tuple[int, int, int, int]:
        return (BUCKET, self.burst, self.period_us, self.rate)

    def split(self, workers: int) -> CompiledLimit:
        if workers <= 1:
            return self
        # Same rate per worker over a period `workers` times longer: rate / workers, exactly.
        return BucketLimit(self.name, -(-self.burst // workers), self.period_us * workers, self.rate)

    def __repr__(self) -> str:
        return f"BucketLimit({self.name}: burst {self.burst}, {self.rate} per {self.period_us} us)"


def _auto_precision(window_us: int) -> int:
    for p in range(AUTO_PRECISION, 0, -1):
        if window_us % p == 0 and window_us // p >= MIN_BUCKET_US:
            return p
    return 1


def compile_limit(cfg: LimitConfig, default_name: str) -> CompiledLimit:
    name = cfg.name or default_name
    if isinstance(cfg, SlidingWindow):
        window_us = round(cfg.window * US)
        prec = cfg.precision or _auto_precision(window_us)
        if window_us % prec:
            raise ValueError(f"limit '{name}': a window of {cfg.window:g}s does not split into {prec} equal "
                             "sub-windows of whole microseconds; choose another precision")
        bucket = window_us // prec
        if bucket < MIN_BUCKET_US:
            raise ValueError(f"limit '{name}': sub-windows would be shorter than 1 ms; lower the precision")
        if cfg.limit * 2 > MAX_EXACT:
            raise ValueError(f"limit '{name}': limit is too large")
        # One bucket more than the precision counts: a unit's bucket keeps counting until it
        # has wholly left the window, so no span of `window` ever admits more than `limit`.
        return WindowLimit(name, cfg.limit, bucket, prec + 1)
    assert isinstance(cfg, TokenBucket)
    period_us = round(cfg.period * US)
    burst = cfg.burst or cfg.rate
    if burst * period_us > MAX_EXACT // 4:
        raise ValueError(f"limit '{name}': burst x period is too large to compute exactly")
    return BucketLimit(name, burst, period_us, cfg.rate)


def compile_tier(tier: TierConfig) -> tuple[CompiledLimit, ...]:
    limits: list[CompiledLimit] = []
    if tier.per_second is not None:
        bucket = TokenBucket(rate=tier.per_second, period=1.0, burst=tier.burst)
        limits.append(compile_limit(bucket, "per_second"))
    elif tier.burst is not None:
        raise ValueError("'burst' belongs with 'per_second' (the token bucket it sizes)")
    if tier.per_minute is not None:
        limits.append(compile_limit(SlidingWindow(limit=tier.per_minute, window=60), "per_minute"))
    if tier.per_hour is not None:
        limits.append(compile_limit(SlidingWindow(limit=tier.per_hour, window=3600), "per_hour"))
    for i, cfg in enumerate(tier.limits):
        limits.append(compile_limit(cfg, f"limit{i}"))
    if not limits:
        raise ValueError("a tier needs at least one limit (per_second, per_minute, per_hour or limits)")
    seen: dict[str, str] = {}
    names: set[str] = set()
    for lim in limits:
        if lim.suffix in seen:
            raise ValueError(f"limits '{seen[lim.suffix]}' and '{lim.name}' count the same window; merge")
        if lim.name in names:
            raise ValueError(f"two limits are named '{lim.name}'")
        seen[lim.suffix] = lim.name
        names.add(lim.name)
    return tuple(limits)


class Decision:
    """The outcome for one request, reported for its tightest limit.

    ``reset_ms``: until that limit is entirely unused again; ``retry_ms``: until the
    refused request would fit (0 when allowed). ``now_ms`` is the deciding clock (Redis
    TIME for the Redis backend). ``fallback`` is set on decisions taken in process while
    Redis was unavailable.
    """

    __slots__ = ("allowed", "fallback", "index", "limit", "now_ms", "remaining", "reset_ms", "retry_ms")

    def __init__(
        self, allowed: bool, index: int, limit: int, remaining: int, reset_ms: int, retry_ms: int, now_ms: int,
        fallback: bool = False,
    ) -> None:
        self.allowed = allowed
        # Position of the tightest limit in the tier's limits (0-based).
        self.index = index
        self.limit = limit
        self.remaining = remaining
        self.reset_ms = reset_ms
        self.retry_ms = retry_ms
        self.now_ms = now_ms
        self.fallback = fallback

    @property
    def reset_epoch(self) -> int:
        """Epoch seconds when the tightest limit is fully available again (rounded up)."""
        return -(-(self.now_ms + self.reset_ms) // 1000)

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before retrying (at least 1)."""
        return max(1, -(-self.retry_ms // 1000))

    def __repr__(self) -> str:
        return (f"Decision(allowed={self.allowed}, index={self.index}, limit={self.limit}, "
                f"remaining={self.remaining}, reset_ms={self.reset_ms}, retry_ms={self.retry_ms})")
