"""The in-process breaker behind the Breaker protocol: permits, 503s, slow calls, stale outcomes."""

from __future__ import annotations

import asyncio

import pytest

from hotpath.audit import AuditEvent, AuditType
from hotpath.errors import ErrorCode, GatewayError
from hotpath.resilience.contracts import Outcome
from hotpath.resilience.local import LocalBreaker
from tests.unit.hotpath.resilience.support import FakeClock, policy


class Sink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


def breaker(clock: FakeClock, sink: Sink | None = None, **settings: object) -> LocalBreaker:
    defaults: dict[str, object] = {"failure_rate": 50, "minimum_calls": 4, "open_duration": 5}
    defaults.update(settings)
    return LocalBreaker("orders", policy(**defaults), clock=clock, audit=sink)


def call(b: LocalBreaker, outcome: Outcome, duration: float = 0.01) -> None:
    permit = b.admit()
    asyncio.run(permit.ready())
    b.record(permit, outcome, duration)


def test_closed_admits_with_one_shared_permit() -> None:
    b = breaker(FakeClock())
    assert b.admit() is b.admit()
    assert b.state_name() == "closed"


def test_open_answers_503_with_retry_after_and_audits_once() -> None:
    clock, sink = FakeClock(), Sink()
    b = breaker(clock, sink)
    for _ in range(4):
        call(b, Outcome.FAILURE)
    assert b.state_name() == "open"
    clock.advance(1.2)
    with pytest.raises(GatewayError) as info:
        b.admit()
    err = info.value
    assert err.status == 503
    assert err.code is ErrorCode.CIRCUIT_BREAKER_OPEN
    assert err.retry_after == 4  # ceil(5 - 1.2)
    assert [e.type for e in sink.events] == [AuditType.BREAKER_OPENED]
    assert sink.events[0].details == {"service": "orders", "from": "closed", "to": "open", "scope": "worker"}


def test_4xx_never_counts_but_timeouts_and_connect_errors_do() -> None:
    b = breaker(FakeClock())
    for _ in range(20):
        call(b, Outcome.SUCCESS)  # the proxy records 4xx as SUCCESS
    assert b.machine.window_counts() == (20, 0, 0)
    b = breaker(FakeClock())
    for outcome in (Outcome.TIMEOUT, Outcome.CONNECT_ERROR, Outcome.FAILURE, Outcome.TIMEOUT):
        call(b, outcome)
    assert b.state_name() == "open"


def test_cancelled_calls_say_nothing() -> None:
    b = breaker(FakeClock())
    for _ in range(10):
        call(b, Outcome.IGNORED)
    assert b.machine.window_counts() == (0, 0, 0)


def test_slow_calls_count_as_failures() -> None:
    b = breaker(FakeClock(), slow_call_duration=0.5)
    call(b, Outcome.SUCCESS, 0.4)
    call(b, Outcome.SUCCESS, 0.6)
    assert b.machine.window_counts() == (2, 1, 1)


def test_half_open_probes_then_close_with_audit() -> None:
    clock, sink = FakeClock(), Sink()
    b = breaker(clock, sink, half_open_probes=2, successes_to_close=2)
    for _ in range(4):
        call(b, Outcome.FAILURE)
    clock.advance(5)
    assert b.state_name() == "half_open"
    p1, p2 = b.admit(), b.admit()
    with pytest.raises(GatewayError):
        b.admit()
    b.record(p1, Outcome.SUCCESS, 0.01)
    assert b.state_name() == "half_open"
    b.record(p2, Outcome.SUCCESS, 0.01)
    assert b.state_name() == "closed"
    assert [e.type for e in sink.events] == [AuditType.BREAKER_OPENED, AuditType.BREAKER_CLOSED]


def test_outcomes_of_calls_admitted_before_a_transition_are_dropped() -> None:
    clock = FakeClock()
    b = breaker(clock)
    stale = b.admit()
    for _ in range(4):
        call(b, Outcome.FAILURE)
    asyncio.run(b.reset())
    assert b.state_name() == "closed"
    for _ in range(10):
        b.record(stale, Outcome.FAILURE, 0.01)
    assert b.machine.window_counts() == (0, 0, 0)


def test_rejection_reuses_its_error_without_growing_a_traceback() -> None:
    b = breaker(FakeClock())
    for _ in range(4):
        call(b, Outcome.FAILURE)
    first = None
    for _ in range(3):
        try:
            b.admit()
        except GatewayError as exc:
            first = first or exc
            assert exc is first
            depth = 0
            tb = exc.__traceback__
            while tb is not None:
                depth += 1
                tb = tb.tb_next
            assert depth <= 3
