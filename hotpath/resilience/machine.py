"""The breaker state machine, in process: the reference semantics.

``breaker.lua`` applies exactly these rules in Redis; this class serves the in-process
backend, the per-worker fallback while Redis is unavailable, and the unit tests. Time is
passed in by the caller (an injected clock), never read here.

- Closed: each outcome enters the sliding window (``WINDOW_BUCKETS`` time buckets). After
  each one, the breaker opens if the consecutive-failure rule or the failure-rate rule
  (at least ``minimum_calls`` calls in the window) fires.
- Open: everything is refused until ``open_duration`` has passed, then half-open.
- Half-open: exactly ``probes`` calls are admitted, each holding a lease that expires after
  ``lease`` seconds. ``successes`` successful probes close the breaker; any failed or
  expired probe reopens it; a probe whose caller went away gives its slot back.
- Every transition starts a new epoch and empties the window, so outcomes of calls admitted
  before it are recognised as stale and dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from hotpath.resilience.policy import BreakerPolicy

CLOSED: Final = 0
OPEN: Final = 1
HALF_OPEN: Final = 2
STATE_NAMES: Final = ("closed", "open", "half_open")

# Probe results, as the script also spells them.
PROBE_SUCCESS: Final = "S"
PROBE_FAILURE: Final = "F"
PROBE_CANCELLED: Final = "I"

TransitionHook = Callable[[int, int, str], None]


def _noop(old: int, new: int, reason: str) -> None:
    return None


class BreakerMachine:
    __slots__ = (
        "_buckets",
        "_calls",
        "_consecutive",
        "_fails",
        "_issued",
        "_leases",
        "_on_transition",
        "_successes",
        "epoch",
        "open_until",
        "policy",
        "state",
    )

    def __init__(self, policy: BreakerPolicy, on_transition: TransitionHook | None = None) -> None:
        self.policy = policy
        self._on_transition = on_transition or _noop
        self.state = CLOSED
        self.epoch = 0
        self.open_until = 0.0
        # [bucket id, calls, failures], oldest first; totals kept alongside.
        self._buckets: deque[list[int]] = deque()
        self._calls = 0
        self._fails = 0
        self._consecutive = 0
        self._issued = 0
        self._successes = 0
        self._leases: dict[int, float] = {}

    # -- time ---------------------------------------------------------------------------
    def poll(self, now: float) -> None:
        """Apply the transitions that time alone causes."""
        if self.state == OPEN:
            if now >= self.open_until:
                self._to(HALF_OPEN, "open duration elapsed", now)
        elif self.state == HALF_OPEN and self._leases and min(self._leases.values()) <= now:
            self._to(OPEN, "a probe did not report within probe_timeout", now)

    def retry_after(self, now: float) -> float:
        """Seconds until a refused caller could be admitted, at best."""
        if self.state == OPEN:
            return max(0.0, self.open_until - now)
        if self.state == HALF_OPEN and self._leases:
            return max(0.0, min(self._leases.values()) - now)
        return 0.0

    # -- closed -------------------------------------------------------------------------
    def record(self, failed: bool, now: float) -> None:
        """One outcome of a call admitted while closed in the current epoch."""
        if self.state != CLOSED:
            return
        policy = self.policy
        bucket = int(now // policy.bucket_width)
        buckets = self._buckets
        oldest = bucket - policy.buckets + 1
        while buckets and buckets[0][0] < oldest:
            _, c, f = buckets.popleft()
            self._calls -= c
            self._fails -= f
        if buckets and buckets[-1][0] == bucket:
            cell = buckets[-1]
        else:
            cell = [bucket, 0, 0]
            buckets.append(cell)
        cell[1] += 1
        self._calls += 1
        if failed:
            cell[2] += 1
            self._fails += 1
            self._consecutive += 1
        else:
            self._consecutive = 0
        # Checked after successes too: F,F,F,S,S reaches the minimum on a success, at 60%.
        if policy.trips(self._calls, self._fails, self._consecutive):
            self._to(OPEN, self._trip_reason(), now)

    def _trip_reason(self) -> str:
        policy = self.policy
        if policy.consecutive and self._consecutive >= policy.consecutive:
            return f"{self._consecutive} consecutive failures"
        rate = 100.0 * self._fails / self._calls
        return f"failure rate {rate:.1f}% over {self._calls} calls in {policy.window:g}s"

    def window_counts(self) -> tuple[int, int, int]:
        """(calls, failures, consecutive failures) currently held."""
        return self._calls, self._fails, self._consecutive

    # -- half-open ----------------------------------------------------------------------
    def try_probe(self, token: int, now: float) -> bool:
        self.poll(now)
        if self.state != HALF_OPEN or self._issued >= self.policy.probes:
            return False
        self._issued += 1
        self._leases[token] = now + self.policy.lease
        return True

    def probe_done(self, token: int, result: str, now: float) -> None:
        self.poll(now)
        if self.state != HALF_OPEN or self._leases.pop(token, None) is None:
            return  # stale: the episode this probe belonged to is over
        if result == PROBE_SUCCESS:
            self._successes += 1
            if self._successes >= self.policy.successes:
                self._to(CLOSED, f"{self._successes} successful probes", now)
        elif result == PROBE_FAILURE:
            self._to(OPEN, "a probe failed", now)
        else:
            self._issued -= 1

    def probes_free(self) -> int:
        return self.policy.probes - self._issued if self.state == HALF_OPEN else 0

    # -- operator and seeding -------------------------------------------------------------
    def reset(self, now: float) -> None:
        self._to(CLOSED, "reset by an operator", now)

    def force(self, state: int, open_for: float, now: float) -> None:
        """Start from a state learnt elsewhere (the shared breaker, when Redis goes away)."""
        self._clear()
        self.state = state
        self.epoch += 1
        self.open_until = now + open_for if state == OPEN else 0.0

    def _clear(self) -> None:
        self._buckets.clear()
        self._calls = self._fails = self._consecutive = 0
        self._issued = self._successes = 0
        self._leases.clear()

    def _to(self, new: int, reason: str, now: float) -> None:
        old = self.state
        self._clear()
        self.state = new
        self.epoch += 1
        self.open_until = now + self.policy.open_duration if new == OPEN else 0.0
        if old != new:
            self._on_transition(old, new, reason)
