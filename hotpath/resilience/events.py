"""Audit events for breaker transitions: opened and closed (half-open is not audited)."""

from __future__ import annotations

import time

from hotpath.resilience.machine import CLOSED, OPEN, STATE_NAMES
from observability.audit_event import AuditEvent, AuditSink, AuditType


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
