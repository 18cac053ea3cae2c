"""The reference breaker semantics, with an injected clock."""

from __future__ import annotations

import pytest

from hotpath.resilience.machine import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    PROBE_CANCELLED,
    PROBE_FAILURE,
    PROBE_SUCCESS,
    BreakerMachine,
)
from tests.unit.hotpath.resilience.support import policy

T0 = 1000.0


def run(machine: BreakerMachine, sequence: str, now: float = T0) -> None:
    for letter in sequence:
        machine.record(letter == "F", now)


def rate_machine(minimum_calls: int, transitions: list[tuple[int, int, str]] | None = None) -> BreakerMachine:
    hook = (lambda a, b, why: transitions.append((a, b, why))) if transitions is not None else None
    return BreakerMachine(policy(failure_rate=50, minimum_calls=minimum_calls, open_duration=10), hook)


# -- Resilience4j's reference sequences ------------------------------------------------------


def test_fffss_opens_at_60_percent() -> None:
    seen: list[tuple[int, int, str]] = []
    m = rate_machine(5, seen)
    run(m, "FFFS")
    assert m.state == CLOSED  # four calls: below the minimum
    run(m, "S")
    assert m.state == OPEN
    assert seen == [(CLOSED, OPEN, "failure rate 60.0% over 5 calls in 10s")]


def test_sssff_stays_closed_at_40_percent_then_opens_at_exactly_50() -> None:
    m = rate_machine(5)
    run(m, "SSSFF")
    assert m.state == CLOSED
    assert m.window_counts() == (5, 2, 2)
    run(m, "F")
    assert m.state == OPEN  # 3 of 6: exactly the threshold trips


def test_nine_failures_below_a_minimum_of_ten_stay_closed() -> None:
    m = rate_machine(10)
    run(m, "F" * 9)
    assert m.state == CLOSED
    run(m, "F")
    assert m.state == OPEN


def test_order_within_the_minimum_does_not_matter() -> None:
    for seq in ("FFSSS", "SFSFS", "SSSFF"):
        m = rate_machine(5)
        run(m, seq + "F")
        assert m.state == OPEN, seq


# -- window, consecutive failures, slow calls --------------------------------------------------


def test_outcomes_leave_the_sliding_window() -> None:
    m = BreakerMachine(policy(failure_rate=50, minimum_calls=4, window=10))
    run(m, "FFF", now=T0)
    assert m.window_counts()[:2] == (3, 3)
    # 11 s later every bucket holding them has left the window: the minimum starts over.
    run(m, "F", now=T0 + 11)
    assert m.state == CLOSED
    assert m.window_counts()[:2] == (1, 1)


def test_window_slides_bucket_by_bucket() -> None:
    m = BreakerMachine(policy(failure_rate=50, minimum_calls=4, window=10))
    run(m, "FF", now=T0)
    run(m, "SS", now=T0 + 5)  # 2 of 4 would trip: 50%
    assert m.state == OPEN

    m = BreakerMachine(policy(failure_rate=50, minimum_calls=4, window=10))
    run(m, "FF", now=T0)
    run(m, "SS", now=T0 + 10.5)  # the failures left the window
    assert m.state == CLOSED
    assert m.window_counts()[:2] == (2, 0)


def test_consecutive_failures_open_whatever_the_rate() -> None:
    m = BreakerMachine(policy(failure_rate=None, consecutive_failures=5, open_duration=60, successes_to_close=2))
    run(m, "S" * 50 + "FFFF")
    assert m.state == CLOSED
    run(m, "S" + "FFFF")  # a success restarts the count
    assert m.state == CLOSED
    run(m, "F")
    assert m.state == OPEN
    assert m.open_until == pytest.approx(T0 + 60)


def test_rate_and_consecutive_rules_together() -> None:
    m = BreakerMachine(policy(failure_rate=50, minimum_calls=100, consecutive_failures=3))
    run(m, "SSSSFFF")
    assert m.state == OPEN


def test_transition_empties_the_window() -> None:
    m = rate_machine(5)
    run(m, "FFFFF")
    assert m.state == OPEN
    assert m.window_counts() == (0, 0, 0)


# -- open and half-open ------------------------------------------------------------------------


def opened(probes: int = 3, successes: int = 2, lease: float = 5.0) -> BreakerMachine:
    m = BreakerMachine(
        policy(failure_rate=50, minimum_calls=2, open_duration=10, half_open_probes=probes,
               successes_to_close=successes, probe_timeout=lease)
    )
    run(m, "FF")
    assert m.state == OPEN
    return m


def test_open_refuses_until_the_open_duration_passes() -> None:
    m = opened()
    assert not m.try_probe(1, T0 + 9.9)
    assert m.retry_after(T0 + 9.9) == pytest.approx(0.1)
    assert m.try_probe(1, T0 + 10)
    assert m.state == HALF_OPEN


def test_half_open_admits_exactly_the_configured_probes() -> None:
    m = opened(probes=3)
    granted = [m.try_probe(token, T0 + 10) for token in range(50)]
    assert granted.count(True) == 3
    assert granted[:3] == [True, True, True]


def test_successes_close_and_outcomes_of_old_probes_are_ignored() -> None:
    seen: list[tuple[int, int, str]] = []
    m = BreakerMachine(
        policy(failure_rate=50, minimum_calls=2, open_duration=10, half_open_probes=3, successes_to_close=2),
        lambda a, b, why: seen.append((a, b, why)),
    )
    run(m, "FF")
    assert all(m.try_probe(t, T0 + 10) for t in (1, 2, 3))
    m.probe_done(1, PROBE_SUCCESS, T0 + 10.1)
    assert m.state == HALF_OPEN
    m.probe_done(2, PROBE_SUCCESS, T0 + 10.2)
    assert m.state == CLOSED
    m.probe_done(3, PROBE_FAILURE, T0 + 10.3)  # its episode is over
    assert m.state == CLOSED
    assert [(a, b) for a, b, _ in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_one_failed_probe_reopens() -> None:
    m = opened(probes=3, successes=2)
    assert m.try_probe(1, T0 + 10) and m.try_probe(2, T0 + 10)
    m.probe_done(1, PROBE_SUCCESS, T0 + 10.1)
    m.probe_done(2, PROBE_FAILURE, T0 + 10.2)
    assert m.state == OPEN
    assert m.open_until == pytest.approx(T0 + 20.2)


def test_an_unreported_probe_expires_and_reopens() -> None:
    m = opened(probes=1, successes=1, lease=3.0)
    assert m.try_probe(1, T0 + 10)
    assert not m.try_probe(2, T0 + 12.9)  # still leased
    assert m.state == HALF_OPEN
    assert m.retry_after(T0 + 12) == pytest.approx(1.0)
    m.poll(T0 + 13)
    assert m.state == OPEN  # not stuck half-open
    assert m.try_probe(3, T0 + 23)
    m.probe_done(1, PROBE_SUCCESS, T0 + 23.5)  # the hung probe answering late changes nothing
    assert m.state == HALF_OPEN
    m.probe_done(3, PROBE_SUCCESS, T0 + 23.5)
    assert m.state == CLOSED


def test_a_cancelled_probe_gives_its_slot_back() -> None:
    m = opened(probes=1, successes=1)
    assert m.try_probe(1, T0 + 10)
    assert not m.try_probe(2, T0 + 10)
    m.probe_done(1, PROBE_CANCELLED, T0 + 10.5)
    assert m.state == HALF_OPEN
    assert m.try_probe(2, T0 + 10.5)


def test_reset_closes_from_any_state() -> None:
    m = opened()
    epoch = m.epoch
    m.reset(T0 + 1)
    assert m.state == CLOSED
    assert m.epoch == epoch + 1
    run(m, "F")
    assert m.state == CLOSED
