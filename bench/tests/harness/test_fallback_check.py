"""The harness refuses limiter figures whose decisions did not all come from Redis."""

from __future__ import annotations

import pytest

from bench.harness.run import Result, _require_redis_decisions
from bench.harness.scenarios import Unavailable

HEALTHY = {"round_trips_per_request": 0.1, "script_calls_per_request": 0.1, "commands_per_request": 4.2}


def _result(at_max: dict[str, float], at_rate: dict[str, float]) -> Result:
    res = Result("limiter", "limiter", "rate limits")
    res.redis_at_max = at_max
    res.fixed_rates = [{"offered_rps": 5000.0, "redis": at_rate}]
    return res


def test_decisions_in_redis_pass() -> None:
    _require_redis_decisions(_result(HEALTHY, HEALTHY), '{"level":"info","msg":"started"}\n')


def test_a_logged_fallback_episode_is_refused() -> None:
    log = '{"level":"warning","logger":"gatehouse.ratelimit","msg":"Redis unavailable for rate limiting (x)"}'
    with pytest.raises(Unavailable, match="fell back"):
        _require_redis_decisions(_result(HEALTHY, HEALTHY), log)


def test_no_commands_in_redis_is_refused_even_without_a_log_line() -> None:
    idle = {**HEALTHY, "commands_per_request": 0.0}
    with pytest.raises(Unavailable, match="5000/s"):
        _require_redis_decisions(_result(HEALTHY, idle), "")


def test_a_run_that_completed_nothing_is_not_blamed_on_redis() -> None:
    res = _result(HEALTHY, {**HEALTHY, "commands_per_request": 0.0})
    res.fixed_rates[0]["requests"] = 0
    _require_redis_decisions(res, "")
