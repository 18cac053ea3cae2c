"""What the proxy needs from a breaker and a retry policy.

The proxy calls, per attempt: ``breaker.admit()`` (sync, local state only; returns a
permit or raises ``GatewayError`` 503 CIRCUIT_BREAKER_OPEN), awaits ``permit.ready()``
(a no-op unless a half-open probe slot must be won cluster-wide), then
``breaker.record(permit, outcome)`` once the attempt's fate is known.

After a failed attempt it asks ``retry.delay(attempt, cause, retry_after, remaining)`` where
``cause`` is the HTTP status, or ``CAUSE_CONNECT`` / ``CAUSE_TIMEOUT`` (not HTTP statuses).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# Retry causes that are not HTTP statuses.
CAUSE_CONNECT: Final = 0
CAUSE_TIMEOUT: Final = 1


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # 5xx
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    SLOW = "slow"  # succeeded, but slower than the slow-call threshold
    IGNORED = "ignored"  # cancelled by the client: says nothing about the upstream


# Base classes, not Protocols: compiled, a call through a Protocol is a method looked up
# by name on every request, and through a native base class a direct call. Every
# implementation lives in a compiled module and derives from these.
class Permit:
    __slots__ = ("pending",)

    def __init__(self, pending: bool = False) -> None:
        # True when ready() must be awaited before the call (a lease to win); False for
        # the common permit, so the hot path skips a coroutine per request.
        self.pending = pending

    async def ready(self) -> None:
        return None


class Breaker:
    __slots__ = ()

    def admit(self) -> Permit:
        raise NotImplementedError

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        raise NotImplementedError

    def state_name(self) -> str:
        raise NotImplementedError


class RetryPolicy:
    __slots__ = ()

    def retryable_methods(self) -> frozenset[str]:
        raise NotImplementedError

    def delay(self, attempt: int, cause: int, retry_after: float | None, remaining: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to stop retrying."""
        raise NotImplementedError

    def on_request(self) -> None:
        """Counts a first attempt toward the retry budget."""
        raise NotImplementedError


ALWAYS: Final = Permit()


class NoBreaker(Breaker):
    """The breaker of a service with none configured: admits everything, records nothing."""

    def admit(self) -> Permit:
        return ALWAYS

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        return None

    def state_name(self) -> str:
        return "disabled"


class NoRetry(RetryPolicy):
    _NONE: frozenset[str] = frozenset()

    def retryable_methods(self) -> frozenset[str]:
        return self._NONE

    def delay(self, attempt: int, cause: int, retry_after: float | None, remaining: float) -> float | None:
        return None

    def on_request(self) -> None:
        return None
