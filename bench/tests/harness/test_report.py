"""Ratios to nginx and target verdicts (bench/harness/report.py)."""

from __future__ import annotations

from typing import Any

from bench.harness import report
from bench.harness.run import Options, Result


def _result(name: str, rps: float, *, against: str | None = None, rates: list[dict[str, Any]] | None = None,
            redis: float | None = None) -> Result:
    r = Result(name, name, "", against=against)
    r.throughput = {"rps": rps, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0, "requests": 1000,
                    "seconds": 1.0, "non_2xx": 0, "socket_errors": 0}
    r.fixed_rates = rates or []
    if redis is not None:
        r.redis_at_max = {"round_trips_per_request": redis, "script_calls_per_request": redis,
                          "commands_per_request": 4 * redis}
    return r


def _at(p50: float, p95: float, p99: float, achieved: float = 5000.0, redis: float = 0.1) -> dict[str, Any]:
    return {"offered_rps": 5000.0, "achieved_rps": achieved, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "shortfall": achieved < 0.97 * 5000, "redis": {"round_trips_per_request": redis}}


def _verdicts(results: list[Result]) -> dict[str, str]:
    return {t["target"]: t["verdict"] for t in report.targets(results)}


def test_ratios_are_against_nginx_proxy_and_the_base_scenario() -> None:
    results = [
        _result("nginx-proxy", 20000, rates=[_at(2, 3, 4)]),
        _result("bare", 12000, against="nginx-proxy"),
        _result("full", 6000, against="bare", rates=[_at(3, 6, 8)]),
    ]
    r = report.ratios(results, (5000.0,))
    assert r["bare"]["rps_vs_nginx_proxy"] == 0.6
    assert r["full"]["rps_vs_nginx_proxy"] == 0.3
    assert r["full"]["rps_vs_bare"] == 0.5
    assert r["full"]["p99_ms_vs_nginx_proxy@5000"] == 2.0


def test_targets_pass_and_fail_on_the_issue_thresholds() -> None:
    results = [
        _result("nginx-proxy", 20000),
        _result("bare", 9000, against="nginx-proxy"),  # 0.45x: below 0.5x
        _result("full", 7100, against="bare", rates=[_at(4.0, 14.0, 26.0)], redis=0.2),
        _result("cache-hit", 15000, against="nginx-proxy"),
    ]
    v = _verdicts(results)
    assert v["bare proxy >= 0.5x nginx proxy"] == "FAIL"
    assert v["full chain >= 5,000 req/s"] == "PASS"
    assert v["full chain >= 0.35x nginx proxy"] == "PASS"
    assert v["full chain p50 <= 5 ms at 5,000/s"] == "PASS"
    assert v["full chain p95 <= 15 ms at 5,000/s"] == "PASS"
    assert v["full chain p99 <= 25 ms at 5,000/s"] == "FAIL"
    assert v["full chain <= 0.25 Redis round trips per request (max load)"] == "PASS"
    assert v["cache hit >= 0.7x nginx proxy"] == "PASS"


def test_a_ratio_just_under_a_threshold_fails_although_it_prints_rounded_up() -> None:
    # 23,893 / 68,340 = 0.34962: shown as 0.35, and below 0.35.
    results = [
        _result("nginx-proxy", 68_340),
        _result("bare", 34_166, against="nginx-proxy"),  # 0.49994
        _result("full", 23_893, against="bare"),
        _result("cache-hit", 47_835, against="nginx-proxy"),  # 0.69996
    ]
    targets = {t["target"]: t for t in report.targets(results)}
    for name, shown in (("bare proxy >= 0.5x nginx proxy", 0.5), ("full chain >= 0.35x nginx proxy", 0.35),
                        ("cache hit >= 0.7x nginx proxy", 0.7)):
        assert targets[name]["measured"] == shown
        assert targets[name]["verdict"] == "FAIL", name


def test_latency_at_a_rate_not_sustained_fails() -> None:
    results = [_result("nginx-proxy", 20000), _result("full", 4000, rates=[_at(1.0, 2.0, 3.0, achieved=4000)])]
    v = _verdicts(results)
    assert v["full chain p50 <= 5 ms at 5,000/s (rate not sustained)"] == "FAIL"


def test_missing_scenarios_are_not_judged() -> None:
    unavailable = Result("full", "full", "", against="bare")
    unavailable.status, unavailable.reason = "not available", "plugin 'auth' is not registered"
    v = _verdicts([_result("nginx-proxy", 20000), unavailable])
    assert set(v.values()) == {"n/a"}


def test_render_shows_unavailable_reasons_and_contention() -> None:
    unavailable = Result("cache-hit", "cache hit", "", against="nginx-proxy")
    unavailable.status, unavailable.reason = "not available", "cache not active"
    data = report.build(Options(), [_result("nginx-proxy", 20000), unavailable], [], busy_before=0.6, elapsed=1.0)
    text = report.render(data)
    assert "cache-hit: not available: cache not active" in text
    assert "contended" in text
    assert data["conditions"]["contended"] is True


def test_profile_summary_ranks_self_and_inclusive_time() -> None:
    from bench.harness.run import profile_summary

    folded = 'process 1:"gw";handle (g.py:1);forward (p.py:2) 6\nprocess 1:"gw";handle (g.py:1) 2\nprocess 1:"gw" 2\n'
    text = profile_summary(folded)
    lines = text.splitlines()
    assert lines[0] == "10 samples"
    self_part = lines[lines.index("self time:") + 1 : lines.index("total time (inclusive):")]
    assert self_part[0].split() == ["60.0%", "forward", "(p.py:2)"]
    assert any("no Python frame" in line and "20.0%" in line for line in self_part)
    assert "  80.0%  handle (g.py:1)" in lines
    assert profile_summary("") == "no samples\n"
