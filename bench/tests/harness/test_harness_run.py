"""One real, tiny harness run: nginx upstream, nginx proxy and the bare gateway (2 workers).

It checks the harness end to end (tools, processes, probes, wrk and h2load parsing, the
JSON it saves) and that every process it started is gone afterwards. The load is a 1 s wrk
run on 4 connections and 100 req/s offered; no figure is asserted, only that the harness
measured something and failed nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.processes import REPO

MARK = "GATEHOUSE_HARNESS_TEST_RUN"


def _marked_processes(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if f"{MARK}={mark}".encode() in Path(f"/proc/{entry}/environ").read_bytes():
                found.append(int(entry))
    return found


def _run(output: Path, *extra: str, duration: str = "1") -> subprocess.CompletedProcess[str]:
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark}
    run = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--scenarios", "bare", "--duration", duration, "--warmup", "0.3",
         "--rates", "100", "--connections", "4", "--users", "10", "--budget", "90", "--no-install",
         "--output", str(output), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert _marked_processes(mark) == [], "the harness left processes running"
    return run


def test_a_short_harness_run_measures_and_cleans_up(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    run = _run(output)
    data = json.loads(output.read_text())
    by_name = {s["name"]: s for s in data["scenarios"]}
    assert list(by_name) == ["nginx-proxy", "bare"]  # the reference is always measured
    for name, s in by_name.items():
        assert s["status"] == "ok", f"{name}: {s['reason']}"
        assert s["throughput"]["requests"] > 0
        assert s["throughput"]["non_2xx"] == 0 and s["throughput"]["socket_errors"] == 0
        (fixed,) = s["fixed_rates"]
        assert fixed["offered_rps"] == 100 and fixed["requests"] > 0 and fixed["non_2xx"] == 0
    assert data["ratios"]["bare"]["rps_vs_nginx_proxy"] is not None
    assert "targets:" in run.stdout and "bare proxy >= 0.5x nginx proxy" in run.stdout
    assert data["machine"]["cores"] == os.cpu_count()


def test_rounds_repeat_every_scenario_and_print_medians(tmp_path: Path) -> None:
    output = tmp_path / "rounds.json"
    run = _run(output, "--rounds", "2", duration="0.5")
    data = json.loads(output.read_text())
    assert len(data["rounds"]) == 2
    for one in data["rounds"]:
        assert [(s["name"], s["status"]) for s in one["scenarios"]] == [("nginx-proxy", "ok"), ("bare", "ok")]
    bare = data["summary"]["scenarios"]["bare"]
    assert bare["rounds_measured"] == 2
    assert len(bare["rps_vs_nginx_proxy"]["values"]) == 2
    assert "Summary of 2 rounds" in run.stdout and "round 2 of 2" in run.stdout
