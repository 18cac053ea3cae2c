"""/metrics of a 2-worker gateway: sums across workers; a crash keeps what was published, exactly.

Request metrics are counted in each worker and published to the shared multiprocess files
every ``publish_interval``, before the worker answers a scrape, and at shutdown. So a
scrape converges on the exact count within an interval, a worker killed with SIGKILL
loses only what it had not published yet, and nothing is ever counted twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Gateway, RedisServer, Upstream
from tests.support.prom import scrape, value

pytestmark = pytest.mark.integration

REQUESTS = "gatehouse_requests_total"
PUBLISH_INTERVAL = 0.2
API_OK = {"route": "api", "method": "GET", "status": "200"}


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prom")
    # A file left by an earlier run must be wiped at start, not summed in.
    (path / "counter_999999.db").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory, metrics_dir: Path) -> Gateway:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"metrics": {"publish_interval": PUBLISH_INTERVAL}, "access_log": {"enabled": False}}
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


def _settle(url: str, done: Callable[[str], bool], timeout: float = 10.0) -> str:
    """Scrapes until ``done`` holds for the exposition (the workers' timers have published)."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)
        if done(text):
            return text
        assert time.monotonic() < deadline, "the workers never published the expected counts"
        time.sleep(0.05)


def _ok(text: str) -> float:
    return value(text, REQUESTS, **API_OK)


@pytest.fixture(scope="module")
def spread(gw: Gateway, metrics_dir: Path) -> Iterator[int]:
    """Sends batches until both workers have published some; yields how many were sent."""
    sent = 0
    deadline = time.monotonic() + 20
    workers = set(gw.worker_pids())
    while time.monotonic() < deadline:
        assert _fire(f"{gw.url}/api/echo/m", 40) == [200] * 40
        sent += 40
        want = sent
        _settle(gw.url, lambda text: _ok(text) == want)  # noqa: B023 - called before the next iteration
        if workers <= _pids_with_counters(metrics_dir):
            break
    yield sent


def test_requests_sum_across_workers(gw: Gateway, spread: int, metrics_dir: Path) -> None:
    assert not (metrics_dir / "counter_999999.db").exists()
    assert set(gw.worker_pids()) <= _pids_with_counters(metrics_dir), "requests never reached both workers"
    text = _settle(
        gw.url,
        lambda t: value(t, "gatehouse_request_duration_seconds_count", route="api") == spread
        and value(t, "gatehouse_upstream_duration_seconds_count", service="backend") == spread,
    )
    assert _ok(text) == spread
    assert value(text, "gatehouse_in_flight_requests") == 0
    # Further publishes (several intervals, and the scrapes' own) add nothing: no delta twice.
    time.sleep(3 * PUBLISH_INTERVAL)
    for _ in range(4):
        text = scrape(gw.url)
        assert _ok(text) == spread
        assert value(text, "gatehouse_request_duration_seconds_count", route="api") == spread


def test_unmatched_and_bounded_labels(gw: Gateway) -> None:
    before = value(scrape(gw.url), REQUESTS, route="(unmatched)", status="404")
    for path in ("/nope/a", "/nope/b?x=1", "/zzz"):
        assert httpx.get(f"{gw.url}{path}", timeout=5).status_code == 404
    assert httpx.request("BREW", f"{gw.url}/api/echo/x", timeout=5).status_code in (200, 405)
    after = _settle(
        gw.url,
        lambda t: value(t, REQUESTS, route="(unmatched)", status="404") == before + 3
        and value(t, REQUESTS, method="OTHER") >= 1,
    )
    assert "/nope" not in after and "/zzz" not in after  # raw paths never become labels
    assert 'method="BREW"' not in after


def test_published_counts_survive_a_worker_crash_exactly(gw: Gateway, spread: int, metrics_dir: Path) -> None:
    # Everything sent so far has been published (spread waited for it): that is what a
    # SIGKILL must neither lose nor double.
    before = _ok(_settle(gw.url, lambda t: _ok(t) == spread))
    old = set(gw.worker_pids())

    # One request is in flight while every worker is killed: without marking the dead
    # workers, the in-flight gauge would keep counting it forever.
    def slow_request() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the worker serving it is killed
            httpx.get(f"{gw.url}/api/slow?delay=3", timeout=10)

    slow = threading.Thread(target=slow_request, daemon=True)
    slow.start()
    _settle(gw.url, lambda t: value(t, "gatehouse_in_flight_requests") >= 1)
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
    # The scrape finds the dead workers from their files and marks them dead.
    text = scrape(gw.url)
    for pid in old:
        assert not (metrics_dir / f"gauge_livesum_{pid}.db").exists(), "dead worker not marked"
        assert (metrics_dir / f"counter_{pid}.db").exists(), "a dead worker's published counts were removed"
    assert value(text, "gatehouse_in_flight_requests") == 0
    assert _ok(text) == before
    time.sleep(3 * PUBLISH_INTERVAL)  # the new workers' publishes add nothing of the old ones'
    assert _ok(scrape(gw.url)) == before
    assert _fire(f"{gw.url}/api/echo/after", 20) == [200] * 20
    _settle(gw.url, lambda t: _ok(t) == before + 20)
    time.sleep(3 * PUBLISH_INTERVAL)
    assert _ok(scrape(gw.url)) == before + 20


def _published(directory: Path) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry.get_sample_value(REQUESTS, API_OK) or 0.0


def test_loss_window_is_the_unpublished_counts_and_a_clean_stop_loses_none(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # The timer never fires here: workers publish only when they answer a scrape or stop.
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"metrics": {"publish_interval": 60}, "access_log": {"enabled": False}}
    gw = gateway_factory(cfg, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert _fire(f"{gw.url}/api/echo/a", 30) == [200] * 30
    # Each scrape publishes the worker that answers it; fresh connections reach both in time.
    _settle(gw.url, lambda t: _ok(t) == 30, timeout=20)
    assert _fire(f"{gw.url}/api/echo/b", 10) == [200] * 10  # counted, never published
    old = set(gw.worker_pids())
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not ((now := set(gw.worker_pids())) and len(now) == 2 and not (now & old)):
        assert time.monotonic() < deadline, f"workers not respawned: {now}"
        time.sleep(0.1)
    gw.wait_ready()
    assert _ok(scrape(gw.url)) == 30  # the 10 unpublished died with their workers; nothing doubled
    assert _fire(f"{gw.url}/api/echo/c", 7) == [200] * 7
    gw.stop()  # SIGTERM: each worker publishes what it counted as it shuts down
    assert _published(tmp_path) == 37


def test_metrics_can_be_switched_off(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"metrics": {"enabled": False}, "access_log": {"enabled": False}}
    gw = gateway_factory(cfg, workers=2)
    assert httpx.get(f"{gw.url}/api/echo/x", timeout=5).status_code == 200
    r = httpx.get(f"{gw.url}/metrics", timeout=5)
    assert r.status_code == 404


def test_plugin_outcome_counters_are_published_exactly_across_workers(
    upstream: Upstream, gateway_factory: GatewayFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Rate-limit and breaker outcomes are counted in process per request (deferred
    # counters) and published with the request metrics: the sums converge exactly.
    cfg = basic_config(upstream.url, plugins={"rate_limit": {"policy": "p"}})
    cfg["redis"] = {"url": redis_server.url}
    cfg["services"]["backend"]["breaker"] = {}
    cfg["plugins"] = {"rate_limit": {"policies": {"p": {
        "key": "ip", "default_tier": "anonymous", "tiers": {"anonymous": {"per_second": 100000}}}}}}
    cfg["observability"] = {"metrics": {"publish_interval": PUBLISH_INTERVAL}, "access_log": {"enabled": False}}
    gw = gateway_factory(cfg, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert _fire(f"{gw.url}/api/echo/p", 60) == [200] * 60
    allowed = {"policy": "p", "tier": "anonymous", "outcome": "allowed"}
    text = _settle(gw.url, lambda t: value(t, "gatehouse_rate_limit_decisions_total", **allowed) >= 60)
    time.sleep(3 * PUBLISH_INTERVAL)  # a later publish must not add anything twice
    text = scrape(gw.url)
    assert value(text, "gatehouse_rate_limit_decisions_total", **allowed) == 60
    assert value(text, "gatehouse_breaker_outcomes_total", service="backend", outcome="success") == 60
    # The limiter's per-call histograms are deferred the same way: the batch sizes add up to
    # exactly the decisions made, and every call has one latency.
    calls = value(text, "gatehouse_redis_batch_size_count", operation="rate_limit")
    assert value(text, "gatehouse_redis_batch_size_sum", operation="rate_limit") == 60
    assert calls >= 1 and value(text, "gatehouse_redis_latency_seconds_count", operation="rate_limit") == calls
    assert set(gw.worker_pids()) <= _pids_with_counters(tmp_path), "requests never reached both workers"
