"""/metrics of a 2-worker gateway: sums across workers, survives a worker crash exactly."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Gateway, Upstream
from tests.support.prom import scrape, value

pytestmark = pytest.mark.integration

REQUESTS = "gatehouse_requests_total"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prom")
    # A file left by an earlier run must be wiped at start, not summed in.
    (path / "counter_999999.db").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory, metrics_dir: Path) -> Gateway:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"access_log": {"enabled": False}}
    return gateway_factory(cfg, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})


def _fire(url: str, n: int) -> list[int]:
    """n requests on fresh connections from 8 threads, so both workers accept some."""

    def one(_: int) -> int:
        with httpx.Client(timeout=10) as c:
            return c.get(url).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _pids_with_counters(path: Path) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in path.glob("counter_*.db")}


@pytest.fixture(scope="module")
def spread(gw: Gateway, metrics_dir: Path) -> Iterator[int]:
    """Sends batches until both workers have served requests; yields how many were sent."""
    sent = 0
    deadline = time.monotonic() + 20
    workers = set(gw.worker_pids())
    while time.monotonic() < deadline:
        assert _fire(f"{gw.url}/api/echo/m", 40) == [200] * 40
        sent += 40
        if workers <= _pids_with_counters(metrics_dir):
            break
    yield sent


def test_requests_sum_across_workers(gw: Gateway, spread: int, metrics_dir: Path) -> None:
    assert not (metrics_dir / "counter_999999.db").exists()
    assert set(gw.worker_pids()) <= _pids_with_counters(metrics_dir), "requests never reached both workers"
    text = scrape(gw.url)
    assert value(text, REQUESTS, route="api", method="GET", status="200") == spread
    assert value(text, "gatehouse_request_duration_seconds_count", route="api") == spread
    assert value(text, "gatehouse_upstream_duration_seconds_count", service="backend") == spread
    assert value(text, "gatehouse_in_flight_requests") == 0


def test_unmatched_and_bounded_labels(gw: Gateway) -> None:
    before = scrape(gw.url)
    for path in ("/nope/a", "/nope/b?x=1", "/zzz"):
        assert httpx.get(f"{gw.url}{path}", timeout=5).status_code == 404
    assert httpx.request("BREW", f"{gw.url}/api/echo/x", timeout=5).status_code in (200, 405)
    after = scrape(gw.url)
    unmatched = value(after, REQUESTS, route="(unmatched)", status="404") - value(
        before, REQUESTS, route="(unmatched)", status="404"
    )
    assert unmatched == 3
    assert "/nope" not in after and "/zzz" not in after  # raw paths never become labels
    assert value(after, REQUESTS, method="OTHER") >= 1
    assert 'method="BREW"' not in after


def test_counts_survive_worker_crash(gw: Gateway, spread: int, upstream: Upstream, metrics_dir: Path) -> None:
    text = scrape(gw.url)
    before = value(text, REQUESTS, route="api", method="GET", status="200")
    assert before >= spread
    old = set(gw.worker_pids())
    # One request is in flight while every worker is killed: without marking the dead
    # workers, the in-flight gauge would keep counting it forever.
    def slow_request() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the worker serving it is killed
            httpx.get(f"{gw.url}/api/slow?delay=3", timeout=10)

    slow = threading.Thread(target=slow_request, daemon=True)
    slow.start()
    deadline = time.monotonic() + 5
    while value(scrape(gw.url), "gatehouse_in_flight_requests") < 1:
        assert time.monotonic() < deadline, "the slow request never showed as in flight"
        time.sleep(0.05)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = set(gw.worker_pids())
        if len(now) == 2 and not (now & old):
            break
        assert time.monotonic() < deadline, f"workers not respawned: {now}"
        time.sleep(0.1)
    gw.wait_ready()
    slow.join(10)
    for pid in old:
        assert not (metrics_dir / f"gauge_livesum_{pid}.db").exists(), "dead worker not marked"
    text = scrape(gw.url)
    assert value(text, "gatehouse_in_flight_requests") == 0
    assert value(text, REQUESTS, route="api", method="GET", status="200") == before
    assert _fire(f"{gw.url}/api/echo/after", 20) == [200] * 20
    text = scrape(gw.url)
    assert value(text, REQUESTS, route="api", method="GET", status="200") == before + 20


def test_metrics_can_be_switched_off(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"metrics": {"enabled": False}, "access_log": {"enabled": False}}
    gw = gateway_factory(cfg, workers=2)
    assert httpx.get(f"{gw.url}/api/echo/x", timeout=5).status_code == 200
    r = httpx.get(f"{gw.url}/metrics", timeout=5)
    assert r.status_code == 404
