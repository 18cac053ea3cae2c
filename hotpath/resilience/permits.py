"""What ``admit()`` hands out, what it raises, and how an outcome becomes pass or fail.

A closed breaker hands every caller the same permit object, made once per epoch, so
admitting a call allocates nothing; a permit from an earlier epoch identifies an outcome as
stale. Probe permits (half-open only) carry the token of their lease.
"""

from __future__ import annotations

import math
from typing import Final

from hotpath.errors import ErrorCode, GatewayError
from hotpath.resilience.contracts import Outcome, Permit
from hotpath.resilience.machine import PROBE_CANCELLED, PROBE_FAILURE, PROBE_SUCCESS


class EpochPermit(Permit):
    """The permit of every call admitted while closed in one epoch."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch


class ProbePermit(Permit):
    """A half-open probe of an in-process breaker: the lease is already held."""

    __slots__ = ("owner", "token")

    def __init__(self, owner: object, token: int) -> None:
        super().__init__()
        self.owner = owner
        self.token = token


FAILED_OUTCOMES: Final = frozenset({Outcome.FAILURE, Outcome.TIMEOUT, Outcome.CONNECT_ERROR, Outcome.SLOW})


def verdict(outcome: Outcome, duration: float, slow: float) -> str:
    """The probe-result letter for an outcome: S, F, or I (says nothing about the upstream)."""
    if outcome is Outcome.SUCCESS:
        return PROBE_FAILURE if duration > slow else PROBE_SUCCESS
    if outcome is Outcome.IGNORED:
        return PROBE_CANCELLED
    return PROBE_FAILURE


def metric_label(outcome: Outcome, duration: float, slow: float) -> Outcome:
    return Outcome.SLOW if outcome is Outcome.SUCCESS and duration > slow else outcome


class Rejection:
    """Builds the 503 CIRCUIT_BREAKER_OPEN of one service, reusing it while Retry-After is
    unchanged (an open breaker refuses at full request rate)."""

    __slots__ = ("_cached", "_message", "_seconds")

    def __init__(self, service: str) -> None:
        self._message = f"the circuit breaker of service '{service}' is open"
        self._seconds = -1
        self._cached: GatewayError | None = None

    def error(self, wait: float) -> GatewayError:
        seconds = max(1, math.ceil(wait))
        cached = self._cached
        if cached is None or seconds != self._seconds:
            cached = GatewayError(503, ErrorCode.CIRCUIT_BREAKER_OPEN, self._message, retry_after=seconds)
            self._cached, self._seconds = cached, seconds
        # A re-raised instance would keep growing its traceback.
        return cached.with_traceback(None)
