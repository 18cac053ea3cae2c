"""The in-process breaker: used when no Redis is configured, and inside each shared
breaker as its fallback while Redis is unavailable (same semantics, see ``machine.py``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from hotpath.audit import AuditSink, NullAuditSink
from hotpath.resilience.contracts import Breaker, Outcome, Permit
from hotpath.resilience.machine import CLOSED, HALF_OPEN, OPEN, STATE_NAMES, BreakerMachine
from hotpath.resilience.permits import (
    FAILED_OUTCOMES,
    EpochPermit,
    ProbePermit,
    Rejection,
    metric_label,
    verdict,
)
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.reporting import BreakerMetrics, emit_transition

Clock = Callable[[], float]


class LocalBreaker(Breaker):
    __slots__ = (
        "_audit",
        "_clock",
        "_machine",
        "_metrics",
        "_permit",
        "_reject",
        "_scope",
        "_slow",
        "_tokens",
        "name",
        "policy",
    )

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        *,
        clock: Clock = time.monotonic,
        audit: AuditSink | None = None,
        metrics: BreakerMetrics | None = None,
        scope: str = "worker",
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._audit = audit or NullAuditSink()
        self._metrics = metrics or BreakerMetrics(name)
        self._scope = scope
        self._slow = policy.slow
        self._machine = BreakerMachine(policy, self._on_transition)
        self._permit = EpochPermit(self._machine.epoch)
        self._reject = Rejection(name)
        self._tokens = itertools.count(1).__next__

    # -- Breaker protocol -----------------------------------------------------------------
    def admit(self) -> Permit:
        machine = self._machine
        if machine.state == CLOSED:
            return self._permit
        now = self._clock()
        machine.poll(now)
        if machine.state == CLOSED:
            return self._permit
        if machine.state == HALF_OPEN:
            token = self._tokens()
            if machine.try_probe(token, now):
                return ProbePermit(self, token)
        self._metrics.rejections.inc()
        raise self._reject.error(machine.retry_after(now))

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        self._metrics.outcomes[metric_label(outcome, duration, self._slow)].inc()
        if permit is self._permit:
            if outcome is Outcome.IGNORED:
                return
            failed = outcome in FAILED_OUTCOMES or duration > self._slow
            self._machine.record(failed, self._clock())
        elif isinstance(permit, ProbePermit) and permit.owner is self:
            self._machine.probe_done(permit.token, verdict(outcome, duration, self._slow), self._clock())

    def state_name(self) -> str:
        machine = self._machine
        if machine.state == OPEN and self._clock() >= machine.open_until:
            return STATE_NAMES[HALF_OPEN]
        return STATE_NAMES[machine.state]

    # -- inspection and control ---------------------------------------------------------
    @property
    def machine(self) -> BreakerMachine:
        return self._machine

    def describe(self) -> dict[str, Any]:
        machine = self._machine
        now = self._clock()
        calls, fails, consecutive = machine.window_counts()
        return {
            "service": self.name,
            "state": self.state_name(),
            "backend": "local",
            "retry_after": round(machine.retry_after(now), 3) if machine.state != CLOSED else None,
            "window": {"calls": calls, "failures": fails, "consecutive_failures": consecutive},
            "probes_free": machine.probes_free(),
        }

    async def reset(self) -> None:
        self._machine.reset(self._clock())

    def seed(self, state: int, open_for: float) -> None:
        """Continue from a state learnt from Redis (the fallback taking over)."""
        old = self._machine.state
        self._machine.force(state, open_for, self._clock())
        self._permit = EpochPermit(self._machine.epoch)
        if old != state:
            self._metrics.transition(old, state)

    def _on_transition(self, old: int, new: int, reason: str) -> None:
        self._permit = EpochPermit(self._machine.epoch)
        self._metrics.transition(old, new)
        emit_transition(self._audit, self.name, old, new, reason, self._scope)
