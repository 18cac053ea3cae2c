"""Retry decisions: causes, attempts, backoff and jitter, Retry-After, deadline, budget."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import msgspec
import pytest

from hotpath.resilience.config import RetryBudgetConfig, RetryConfig
from hotpath.resilience.contracts import CAUSE_CONNECT, CAUSE_TIMEOUT
from hotpath.resilience.retry import RetryBudget, ServiceRetry, parse_retry_after
from tests.unit.hotpath.resilience.support import FakeClock


def retry(rand: float = 0.5, clock: FakeClock | None = None, **settings: Any) -> ServiceRetry:
    config = msgspec.convert(settings, RetryConfig)
    return ServiceRetry("svc", config, clock=clock or FakeClock(), rand=lambda: rand)


def test_backoff_is_exponential_and_capped() -> None:
    r = retry(initial_delay=0.1, max_delay=0.5, multiplier=2, jitter=0.2)
    assert [round(r.backoff(a), 6) for a in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)])
def test_jitter_spans_plus_minus_20_percent(rand: float, factor: float) -> None:
    r = retry(rand=rand, initial_delay=1.0, max_delay=10)
    assert r.backoff(0) == pytest.approx(factor, abs=1e-5)


def test_retryable_causes() -> None:
    r = retry(attempts=5)
    for cause in (502, 503, 504, CAUSE_CONNECT):
        assert r.delay(0, cause, None, 10.0) is not None, cause
    for cause in (500, 501, 429, 404, CAUSE_TIMEOUT):
        assert r.delay(0, cause, None, 10.0) is None, cause
    r = retry(on_429=True, on_timeout=True)
    assert r.delay(0, 429, None, 10.0) is not None
    assert r.delay(0, CAUSE_TIMEOUT, None, 10.0) is not None


def test_attempts_include_the_first() -> None:
    r = retry(attempts=3)
    assert r.delay(0, 503, None, 10.0) is not None
    assert r.delay(1, 503, None, 10.0) is not None
    assert r.delay(2, 503, None, 10.0) is None
    assert retry(attempts=1).delay(0, 503, None, 10.0) is None


def test_retry_after_is_a_floor_and_has_a_ceiling() -> None:
    r = retry(initial_delay=0.05, max_retry_after=5)
    assert r.delay(0, 503, 2.0, 10.0) == 2.0
    assert r.delay(0, 503, 0.0, 10.0) == pytest.approx(0.05)
    assert r.delay(0, 503, 6.0, 60.0) is None


def test_no_retry_that_could_not_start_before_the_deadline() -> None:
    r = retry(initial_delay=0.5, max_delay=1)
    assert r.delay(0, 503, None, 0.4) is None
    assert r.delay(0, 503, 3.0, 2.0) is None
    assert r.delay(0, 503, None, 0.6) == pytest.approx(0.5)


def test_methods_default_to_idempotent_ones() -> None:
    assert retry().retryable_methods() == frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
    assert "POST" not in retry().retryable_methods()


def budget(clock: FakeClock, ratio: float = 0.2, floor: float = 0.0, window: float = 10.0) -> RetryBudget:
    return RetryBudget(RetryBudgetConfig(ratio=ratio, min_per_second=floor, window=window), clock)


def test_budget_allows_a_fifth_of_requests() -> None:
    clock = FakeClock()
    b = budget(clock)
    for _ in range(100):
        b.on_request()
    spent = sum(b.try_spend() for _ in range(100))
    assert spent == 20


def test_budget_floor_lets_a_quiet_service_retry() -> None:
    clock = FakeClock()
    b = budget(clock, floor=0.5)  # 5 retries per 10 s window
    assert sum(b.try_spend() for _ in range(20)) == 5


def test_budget_slides_with_time() -> None:
    clock = FakeClock()
    b = budget(clock)
    for _ in range(100):
        b.on_request()
    assert sum(b.try_spend() for _ in range(100)) == 20
    clock.advance(15)  # half of the previous window still weighs: 100*0.5 requests, 20*0.5 retries
    assert b.allowance() == pytest.approx(0.0)
    clock.advance(10)  # both windows gone
    assert b.allowance() == pytest.approx(0.0)
    for _ in range(50):
        b.on_request()
    assert b.allowance() == pytest.approx(10.0)


def test_budget_exhaustion_stops_retries() -> None:
    clock = FakeClock()
    r = retry(clock=clock, attempts=5, budget={"ratio": 0.1, "min_per_second": 0})
    for _ in range(10):
        r.on_request()
    assert r.delay(0, 503, None, 10.0) is not None
    assert r.delay(0, 503, None, 10.0) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
