"""Helpers for the resilience unit tests: a settable clock and compiled policies."""

from __future__ import annotations

from typing import Any

import msgspec

from hotpath.resilience.config import BreakerConfig
from hotpath.resilience.policy import BreakerPolicy


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(probe_timeout_default: float = 5.0, **settings: Any) -> BreakerPolicy:
    config = msgspec.convert(settings, BreakerConfig)
    return BreakerPolicy(config, default_probe_timeout=probe_timeout_default)
