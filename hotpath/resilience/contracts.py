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
from typing import Final, Protocol

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


class Permit(Protocol):
    # True when ready() must be awaited before the call (a lease to win); False for the
    # common permit, so the hot path skips a coroutine per request.
    pending: bool

    async def ready(self) -> None: ...


class Breaker(Protocol):
    def admit(self) -> Permit: ...

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None: ...

    def state_name(self) -> str: ...


class RetryPolicy(Protocol):
    def retryable_methods(self) -> frozenset[str]: ...

    def delay(self, attempt: int, cause: int, retry_after: float | None, remaining: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to stop retrying."""

    def on_request(self) -> None:
        """Counts a first attempt toward the retry budget."""


class _OpenPermit:
    __slots__ = ()
    pending = False

    async def ready(self) -> None:
        return None


ALWAYS: Final = _OpenPermit()


class NoBreaker:
    """The breaker of a service with none configured: admits everything, records nothing."""

    def admit(self) -> Permit:
        return ALWAYS

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        return None

    def state_name(self) -> str:
        return "disabled"


class NoRetry:
    _NONE: frozenset[str] = frozenset()

    def retryable_methods(self) -> frozenset[str]:
        return self._NONE

    def delay(self, attempt: int, cause: int, retry_after: float | None, remaining: float) -> float | None:
        return None

    def on_request(self) -> None:
        return None
