"""A breaker configuration compiled once into the numbers the state machines use.

The in-process machine (``machine.py``) and the Redis script (``breaker.lua``) read the same
compiled policy, so both apply identical semantics; ``lua_args`` is the script's
configuration arguments, encoded once.
"""

from __future__ import annotations

import math
from typing import Final

from hotpath.resilience.config import BreakerConfig

# The sliding window is kept as this many time buckets (Resilience4j keeps one per second;
# a fixed count keeps the cost per decision constant whatever the window length).
WINDOW_BUCKETS: Final = 10


class BreakerPolicy:
    __slots__ = (
        "bucket_width",
        "buckets",
        "consecutive",
        "flush_interval",
        "lease",
        "lua_args",
        "minimum_calls",
        "open_duration",
        "probes",
        "rate_bp",
        "slow",
        "successes",
        "ttl",
        "window",
    )

    def __init__(self, config: BreakerConfig, *, default_probe_timeout: float) -> None:
        # Rate in basis points, compared as integers (fails * 10000 >= bp * calls) so a
        # failure rate of exactly the threshold trips on both sides, without float error.
        self.rate_bp = round(config.failure_rate * 100) if config.failure_rate is not None else 0
        self.minimum_calls = config.minimum_calls
        self.window = config.window
        self.buckets = WINDOW_BUCKETS
        self.bucket_width = config.window / WINDOW_BUCKETS
        self.consecutive = config.consecutive_failures or 0
        self.slow = config.slow_call_duration if config.slow_call_duration is not None else math.inf
        self.open_duration = config.open_duration
        self.probes = config.probes
        self.successes = config.successes_to_close
        self.lease = config.probe_timeout if config.probe_timeout is not None else default_probe_timeout
        self.flush_interval = config.flush_interval
        # Redis forgets a breaker nobody touched for this long (it is then closed and empty).
        self.ttl = max(3600.0, 2 * (self.window + self.open_duration + self.lease))
        bucket_ms = max(1, round(self.bucket_width * 1000))
        self.lua_args: tuple[int, ...] = (
            self.rate_bp,
            self.minimum_calls,
            bucket_ms,
            self.buckets,
            self.consecutive,
            max(1, round(self.open_duration * 1000)),
            self.probes,
            self.successes,
            max(1, round(self.lease * 1000)),
            round(self.ttl * 1000),
        )

    def trips(self, calls: int, fails: int, consecutive: int) -> bool:
        if self.consecutive and consecutive >= self.consecutive:
            return True
        return bool(self.rate_bp) and calls >= self.minimum_calls and fails * 10_000 >= self.rate_bp * calls
