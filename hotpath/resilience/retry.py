"""Retries of failed upstream attempts: which ones, how long to wait, and a budget.

``ServiceRetry.delay`` is asked after an attempt fails with a retryable cause (a status,
``CAUSE_CONNECT`` or ``CAUSE_TIMEOUT``) and answers the wait before the next attempt, or
None to stop. It stops when the attempts are used up, when the wait would not end before the
route's deadline, when the upstream's ``Retry-After`` is longer than ``max_retry_after``,
and when the retry budget is spent. Every retry is counted by cause, every refusal by the
budget in ``gatehouse_retry_budget_exhausted``.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from typing import Any

from hotpath import metrics as m
from hotpath.resilience.config import RetryBudgetConfig, RetryConfig
from hotpath.resilience.contracts import CAUSE_CONNECT, CAUSE_TIMEOUT, RetryPolicy

Clock = Callable[[], float]


class RetryBudget:
    """Retries allowed: ``ratio`` of first attempts plus ``min_per_second``, measured over a
    sliding window estimated from two fixed windows (the previous one weighted by how much
    of it still overlaps the sliding one)."""

    __slots__ = ("_clock", "_prev_requests", "_prev_retries", "_requests", "_retries", "_start", "floor",
                 "ratio", "window")

    def __init__(self, config: RetryBudgetConfig, clock: Clock = time.monotonic) -> None:
        self.ratio = config.ratio
        self.window = config.window
        self.floor = config.min_per_second * config.window
        self._clock = clock
        self._start = clock()
        self._requests = self._retries = 0
        self._prev_requests = self._prev_retries = 0

    def _roll(self, now: float) -> None:
        passed = int((now - self._start) // self.window)
        if passed <= 0:
            return
        if passed == 1:
            self._prev_requests, self._prev_retries = self._requests, self._retries
        else:
            self._prev_requests = self._prev_retries = 0
        self._requests = self._retries = 0
        self._start += passed * self.window

    def on_request(self) -> None:
        now = self._clock()
        if now - self._start >= self.window:
            self._roll(now)
        self._requests += 1

    def allowance(self) -> float:
        """Retries the budget would still allow right now."""
        now = self._clock()
        self._roll(now)
        weight = 1.0 - (now - self._start) / self.window
        requests = self._prev_requests * weight + self._requests
        retries = self._prev_retries * weight + self._retries
        return self.ratio * requests + self.floor - retries

    def try_spend(self) -> bool:
        if self.allowance() < 1.0:
            return False
        self._retries += 1
        return True


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value (delta-seconds or HTTP-date), None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ServiceRetry(RetryPolicy):
    __slots__ = ("_attempts", "_causes", "_exhausted", "_initial", "_jitter", "_max", "_max_retry_after",
                 "_methods", "_multiplier", "_random", "budget")

    def __init__(
        self,
        service: str,
        config: RetryConfig,
        *,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._methods = frozenset(config.methods)
        self._attempts = config.attempts
        self._initial = config.initial_delay
        self._max = config.max_delay
        self._multiplier = config.multiplier
        self._jitter = config.jitter
        self._max_retry_after = config.max_retry_after
        self._random = rand
        causes: dict[int, str] = {CAUSE_CONNECT: "connect_error", 502: "status_502", 503: "status_503",
                                  504: "status_504"}
        if config.on_429:
            causes[429] = "status_429"
        if config.on_timeout:
            causes[CAUSE_TIMEOUT] = "timeout"
        self._causes: dict[int, Any] = {c: m.RETRIES.labels(service, reason) for c, reason in causes.items()}
        self._exhausted = m.RETRY_BUDGET_EXHAUSTED.labels(service)
        self.budget = RetryBudget(config.budget, clock)

    def retryable_methods(self) -> frozenset[str]:
        return self._methods

    def on_request(self) -> None:
        self.budget.on_request()

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt ``attempt`` (0 = the first)."""
        base = min(self._max, self._initial * self._multiplier**attempt)
        return base * (1.0 - self._jitter + 2.0 * self._jitter * self._random())

    def delay(self, attempt: int, cause: int, retry_after: float | None, remaining: float) -> float | None:
        counter = self._causes.get(cause)
        if counter is None or attempt + 1 >= self._attempts:
            return None
        wait = self.backoff(attempt)
        if retry_after is not None:
            if retry_after > self._max_retry_after:
                return None
            wait = max(wait, retry_after)
        if wait >= remaining:
            return None  # the next attempt could not start before the route's deadline
        if not self.budget.try_spend():
            self._exhausted.inc()
            return None
        counter.inc()
        return wait
