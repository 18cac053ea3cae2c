"""Several rounds summarized by medians (bench/harness/rounds.py)."""

from __future__ import annotations

from typing import Any

from bench.harness import report, rounds
from bench.harness.model import Options, Result


def _result(name: str, rps: float, *, against: str | None = None, at: dict[str, Any] | None = None,
            cpu: float = 100.0) -> Result:
    r = Result(name, name, "", against=against)
    r.throughput = {"rps": rps, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0, "requests": 1000,
                    "seconds": 1.0, "non_2xx": 0, "socket_errors": 0}
    r.cpu_ms_per_1k = cpu
    r.fixed_rates = [at] if at else []
    return r


def _at(p50: float, p99: float, achieved: float = 5000.0) -> dict[str, Any]:
    return {"offered_rps": 5000.0, "achieved_rps": achieved, "p50_ms": p50, "p95_ms": p50 * 2, "p99_ms": p99,
            "shortfall": achieved < 0.97 * 5000, "redis": {"round_trips_per_request": 0.1}}


def _round(nginx: float, full: float, full_at: dict[str, Any], cpu: float = 200.0) -> dict[str, Any]:
    results = [_result("nginx-proxy", nginx, at=_at(1.0, 3.0), cpu=40.0),
               _result("full", full, against="bare", at=full_at, cpu=cpu)]
    return report.build(Options(), results, [], busy_before=0.0, elapsed=1.0)


def test_ratios_are_taken_within_each_round_then_their_median() -> None:
    # nginx moves between rounds; a ratio of medians (7,000 / 20,000 = 0.35) would hide that
    # the full chain reached 0.35x in one round only.
    data = [_round(20000, 6000, _at(3.0, 9.0)), _round(10000, 3500, _at(4.0, 12.0)),
            _round(30000, 7000, _at(2.0, 30.0))]
    summary = rounds.summarize(data)
    full = summary["scenarios"]["full"]
    assert full["rounds_measured"] == 3
    assert full["rps"]["median"] == 6000
    assert full["rps_vs_nginx_proxy"]["values"] == [0.3, 0.35, 0.233]
    assert full["rps_vs_nginx_proxy"]["median"] == 0.3
    assert full["at_first_rate"]["p99_ms"]["median"] == 12.0
    assert full["cpu_ms_per_1k"]["median"] == 200.0


def test_targets_follow_the_majority_of_rounds_and_a_tie_fails() -> None:
    data = [_round(20000, 8000, _at(3.0, 9.0)), _round(20000, 6000, _at(3.0, 30.0)),
            _round(20000, 7200, _at(3.0, 26.0))]
    by_id = {t["id"]: t for t in rounds.summarize(data)["targets"]}
    ratio = by_id["full chain >= 0.35x nginx proxy"]
    assert (ratio["verdict"], ratio["passed"], ratio["judged"]) == ("PASS", 2, 3)
    assert ratio["measured"]["median"] == 0.36
    p99 = by_id["full chain p99 <= 25 ms at 5,000/s"]
    assert (p99["verdict"], p99["passed"]) == ("FAIL", 1)
    tie = {t["id"]: t for t in rounds.summarize(data[:2])["targets"]}
    assert (tie["full chain >= 0.35x nginx proxy"]["verdict"], tie["full chain >= 0.35x nginx proxy"]["passed"]) == (
        "FAIL", 1)


def test_a_saturated_round_counts_against_latency_targets_but_not_in_the_latency_medians() -> None:
    data = [_round(20000, 8000, _at(3.0, 9.0)), _round(20000, 4000, _at(90.0, 300.0, achieved=4000))]
    summary = rounds.summarize(data)
    assert summary["scenarios"]["full"]["at_first_rate"]["p99_ms"]["values"] == [9.0]
    p99 = {t["id"]: t for t in summary["targets"]}["full chain p99 <= 25 ms at 5,000/s"]
    assert (p99["verdict"], p99["passed"], p99["judged"]) == ("FAIL", 1, 2)


def test_a_scenario_missing_from_a_round_is_summarized_from_the_others() -> None:
    failed = report.build(Options(), [_result("nginx-proxy", 20000), Result("full", "full", "", against="bare",
                                                                            status="failed", reason="boom")],
                          [], busy_before=0.0, elapsed=1.0)
    summary = rounds.summarize([_round(20000, 7000, _at(3.0, 9.0)), failed])
    assert summary["scenarios"]["full"]["rounds_measured"] == 1
    text = rounds.render(summary, 5000.0)
    assert "Summary of 2 rounds" in text
    assert "[PASS 1/1] full chain >= 0.35x nginx proxy: median 0.35x (0.35-0.35)" in text
    assert "[PASS 1/1] full chain >= 5,000 req/s: median 7,000 req/s (7,000-7,000)" in text


def test_target_figures_of_five_digits_print_whole_with_separators() -> None:
    summary = rounds.summarize([_round(50000, 15427, _at(3.0, 9.0)), _round(50000, 17256, _at(3.2, 9.5))])
    text = rounds.render(summary, 5000.0)
    assert "full chain >= 5,000 req/s: median 16,342 req/s (15,427-17,256)" in text
    assert "e+0" not in text
