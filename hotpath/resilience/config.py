"""Typed configuration of a service's breaker (``services.<name>.breaker``) and retries
(``services.<name>.retry``).

Cross-field rules live in ``__post_init__`` and raise ``ValueError``; msgspec turns that
into a validation error and the loader reports it with the file and the YAML path.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from hotpath.structs import Seconds, Strict

Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]

IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")




class BreakerConfig(Strict, frozen=True, kw_only=True):
    """When a service's breaker opens, how long it stays open and how it closes again.

    It opens when either trip rule fires: the failure rate over the sliding ``window``
    reaches ``failure_rate`` once ``minimum_calls`` calls are in the window, or
    ``consecutive_failures`` failures arrive in a row. Set one of them to null to use only
    the other. Failures are 5xx responses, timeouts, connection errors and (if set) calls
    slower than ``slow_call_duration``; 4xx responses never count.
    """

    # Percent of failed calls in the window that opens the breaker; null: rate rule off.
    failure_rate: Percent | None = 50.0
    minimum_calls: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20
    # The sliding time window the failure rate is measured over, in seconds.
    window: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 10.0
    # Opens after this many failures in a row, whatever the rate; null: rule off.
    consecutive_failures: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    # A call that succeeds but takes longer than this (to the response head) counts as a
    # failure; null: only errors count.
    slow_call_duration: Seconds | None = None
    # How long the breaker stays open before it lets probes through.
    open_duration: Seconds = 30.0
    # Calls admitted while half-open, across every worker and pod; null: successes_to_close.
    half_open_probes: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    # Successful probes that close the breaker again; any failed probe reopens it.
    successes_to_close: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    # A probe that has not reported within this many seconds counts as failed, so a
    # hanging upstream (or a worker that died mid-probe) cannot keep the breaker
    # half-open. Null: the service's total timeout plus one second.
    probe_timeout: Seconds | None = None
    # How long a worker gathers outcomes before sending them to Redis in one call. The
    # worker flushes all its breakers at the shortest interval configured among them.
    flush_interval: Annotated[float, msgspec.Meta(ge=0.005, le=5)] = 0.05

    def __post_init__(self) -> None:
        if self.failure_rate is None and self.consecutive_failures is None:
            raise ValueError("set failure_rate, consecutive_failures or both, or the breaker never opens")
        if self.successes_to_close > self.probes:
            raise ValueError(
                f"successes_to_close ({self.successes_to_close}) cannot exceed half_open_probes "
                f"({self.probes}): the breaker could never close"
            )

    @property
    def probes(self) -> int:
        return self.half_open_probes if self.half_open_probes is not None else self.successes_to_close


class RetryBudgetConfig(Strict, frozen=True, kw_only=True):
    """Caps retries so they cannot multiply the load on a failing service.

    Per worker, retries in the last ``window`` seconds may be at most ``ratio`` of the
    first attempts in it, plus ``min_per_second`` so that a quiet service can still retry.
    """

    ratio: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.2
    min_per_second: Annotated[float, msgspec.Meta(ge=0, le=10_000)] = 5.0
    window: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0


class RetryConfig(Strict, frozen=True, kw_only=True):
    """Retries of failed upstream attempts, within the route's total timeout.

    Retried: connection errors, 502, 503 and 504 (and 429 or timeouts if enabled), only
    for ``methods`` (idempotent ones by default) unless the route sets
    ``retry_non_idempotent: true``, and only while the gateway still holds the request
    body (none, or small enough to be buffered).
    """

    # Attempts in all, the first included (3 = at most 2 retries).
    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    # Backoff before retry n (n = 1, 2, ...): initial_delay * multiplier**(n-1), at most
    # max_delay, then scaled by a random factor in [1 - jitter, 1 + jitter].
    initial_delay: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.05
    max_delay: Annotated[float, msgspec.Meta(ge=0, le=300)] = 2.0
    multiplier: Annotated[float, msgspec.Meta(ge=1, le=10)] = 2.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    # Also retry 429 Too Many Requests (after its Retry-After).
    on_429: bool = False
    # Also retry attempts that timed out (only useful when read < total timeout).
    on_timeout: bool = False
    # A Retry-After longer than this ends the retries instead of waiting.
    max_retry_after: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    methods: tuple[str, ...] = IDEMPOTENT_METHODS
    budget: RetryBudgetConfig = RetryBudgetConfig()

    def __post_init__(self) -> None:
        if self.initial_delay > self.max_delay:
            raise ValueError(f"initial_delay ({self.initial_delay}) exceeds max_delay ({self.max_delay})")
        for m in self.methods:
            if not m.isascii() or not m.isalpha() or not m.isupper():
                raise ValueError(f"'{m}' in methods is not an upper-case HTTP method")
