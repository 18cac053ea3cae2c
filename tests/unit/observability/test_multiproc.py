"""Workers that exited are found from their metric files at the next scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from observability.multiproc import sweep_dead
from tests.support.paths import REPO

_WORKER = """
from prometheus_client import Counter, Gauge
Gauge("t_in_flight", "in flight", multiprocess_mode="livesum").set(3)
Counter("t_requests", "requests").inc(5)
"""


def _run_worker(directory: Path) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _WORKER + "import os; print(os.getpid())"],
                          env=env, capture_output=True, text=True, check=True, timeout=60)
    return int(proc.stdout.strip())


def test_an_exited_workers_live_gauges_go_and_its_counters_stay(tmp_path: Path) -> None:
    pid = _run_worker(tmp_path)
    assert (tmp_path / f"gauge_livesum_{pid}.db").exists()
    assert sweep_dead(str(tmp_path)) == [pid]
    assert not (tmp_path / f"gauge_livesum_{pid}.db").exists()
    assert (tmp_path / f"counter_{pid}.db").exists()  # counts stay in the sum
    assert sweep_dead(str(tmp_path)) == []


def test_a_running_worker_is_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    mine.write_bytes(b"")
    assert sweep_dead(str(tmp_path)) == []
    assert mine.exists()
