"""The harness tells which runs had rate-limit decisions that did not all come from Redis."""

from __future__ import annotations

import pytest

from bench.harness import report
from bench.harness.run import Result, _require_redis_decisions, fallback_line
from bench.harness.scenarios import Unavailable

HEALTHY = {"round_trips_per_request": 0.1, "script_calls_per_request": 0.1, "commands_per_request": 4.2}
LOGGED = '{"level":"warning","logger":"gatehouse.ratelimit","msg":"Redis unavailable for rate limiting (x)"}'


def _result(at_max: dict[str, float], at_rate: dict[str, float], fell_back: str | None = None) -> Result:
    res = Result("full", "full chain", "everything")
    res.throughput = {"rps": 5100.0, "requests": 51000, "p50_ms": 10.0, "p99_ms": 30.0}
    res.redis_at_max = at_max
    res.fixed_rates = [{"offered_rps": 5000.0, "achieved_rps": 5000.0, "requests": 50000, "shortfall": False,
                        "p50_ms": 3.0, "p95_ms": 9.0, "p99_ms": 14.0, "redis": at_rate, "fell_back": fell_back}]
    return res


def test_the_log_marker_is_found() -> None:
    assert fallback_line('{"level":"info","msg":"started"}\n' + LOGGED + "\n") == LOGGED
    assert fallback_line('{"level":"info","msg":"started"}\n') is None


def test_decisions_in_redis_pass() -> None:
    res = _result(HEALTHY, HEALTHY)
    _require_redis_decisions(res)
    assert res.fixed_rates[0]["fell_back"] is None and not res.notes


def test_a_fallback_at_max_load_makes_the_scenario_unavailable() -> None:
    res = _result(HEALTHY, HEALTHY)
    res.fallback_at_max = LOGGED
    with pytest.raises(Unavailable, match="max load"):
        _require_redis_decisions(res)


def test_no_commands_in_redis_at_max_load_is_refused_even_without_a_log_line() -> None:
    with pytest.raises(Unavailable, match="not deciding in Redis"):
        _require_redis_decisions(_result({**HEALTHY, "commands_per_request": 0.0}, HEALTHY))


def test_a_fixed_rate_run_that_fell_back_is_marked_and_fails_its_targets() -> None:
    res = _result(HEALTHY, HEALTHY, fell_back=LOGGED)
    _require_redis_decisions(res)
    assert any("fell back" in n for n in res.notes)
    verdicts = {t["target"]: t["verdict"] for t in report.targets([res])}
    assert verdicts["full chain p99 <= 25 ms at 5,000/s (rate limiter fell back)"] == "FAIL"  # 14 ms, yet failed
    assert verdicts["full chain <= 0.25 Redis round trips per request (at 5,000/s) (rate limiter fell back)"] == "n/a"
    # Redis's counters alone also mark a run.
    quiet = _result(HEALTHY, {**HEALTHY, "commands_per_request": 0.2})
    _require_redis_decisions(quiet)
    assert quiet.fixed_rates[0]["fell_back"]


def test_a_run_that_completed_nothing_is_not_blamed_on_redis() -> None:
    res = _result(HEALTHY, {**HEALTHY, "commands_per_request": 0.0})
    res.fixed_rates[0]["requests"] = 0
    _require_redis_decisions(res)
    assert not res.fixed_rates[0]["fell_back"]
