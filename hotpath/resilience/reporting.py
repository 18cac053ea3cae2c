"""What a breaker reports: its metric children (resolved once, at construction) and the
audit events of its transitions (opened and closed; half-open is not audited)."""

from __future__ import annotations

import time
from typing import Any

from hotpath import metrics as m
from hotpath.audit import AuditEvent, AuditSink, AuditType
from hotpath.deferred import deferred
from hotpath.resilience.contracts import Outcome
from hotpath.resilience.machine import CLOSED, OPEN, STATE_NAMES

# Gauge values documented on BREAKER_STATE: 0 closed, 1 half-open, 2 open.
GAUGE_VALUE = {0: 0.0, 1: 2.0, 2: 1.0}


class BreakerMetrics:
    __slots__ = ("_state", "_transitions", "fallback", "outcomes", "rejections")

    def __init__(self, service: str) -> None:
        self._state = m.BREAKER_STATE.labels(service)
        self.rejections = m.BREAKER_REJECTIONS.labels(service)
        self.fallback = m.BREAKER_LOCAL_FALLBACK.labels(service)
        # Recorded for every upstream call: counted in process, published in batches.
        self.outcomes: dict[Outcome, Any] = {
            o: deferred(m.BREAKER_OUTCOMES.labels(service, o.value)) for o in Outcome
        }
        self._transitions = {
            (a, b): m.BREAKER_TRANSITIONS.labels(service, STATE_NAMES[a], STATE_NAMES[b])
            for a in range(3)
            for b in range(3)
            if a != b
        }
        self._state.set(0.0)

    def transition(self, old: int, new: int) -> None:
        if old != new:
            self._transitions[(old, new)].inc()
        self._state.set(GAUGE_VALUE[new])


def emit_transition(sink: AuditSink, service: str, old: int, new: int, reason: str, scope: str) -> None:
    """``scope`` says who saw it: "cluster" (decided once in Redis) or "worker" (in-process)."""
    if new == OPEN:
        kind = AuditType.BREAKER_OPENED
    elif new == CLOSED:
        kind = AuditType.BREAKER_CLOSED
    else:
        return
    sink.emit(
        AuditEvent(
            time=time.time(),
            type=kind,
            reason=reason,
            details={"service": service, "from": STATE_NAMES[old], "to": STATE_NAMES[new], "scope": scope},
        )
    )
