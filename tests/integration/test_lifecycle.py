"""Process lifecycle: graceful shutdown, drain, worker respawn, startup refusal."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Gateway, Upstream


def test_sigterm_finishes_in_flight_request_and_exits_zero(upstream: Upstream) -> None:
    gw = Gateway(basic_config(upstream.url), workers=2)
    try:
        result: dict[str, object] = {}

        def slow_call() -> None:
            try:
                r = httpx.get(f"{gw.url}/api/slow?delay=2", timeout=15)
                result["status"] = r.status_code
                result["body"] = r.json()
            except httpx.HTTPError as exc:  # pragma: no cover - reported by the assertion
                result["error"] = repr(exc)

        t = threading.Thread(target=slow_call)
        t.start()
        time.sleep(0.7)  # the request is now in flight at the upstream
        gw.terminate()
        t.join(20)
        assert result.get("status") == 200, result
        assert result["body"] == {"slow": True}
        assert gw.proc.wait(30) == 0, gw.output()
    finally:
        gw.stop()


def test_drain_turns_readiness_false_while_still_serving(upstream: Upstream) -> None:
    config = basic_config(upstream.url)
    config["server"] = {"drain_delay": 2.0}
    gw = Gateway(config, workers=2)
    try:
        assert httpx.get(f"{gw.url}/health/ready").status_code == 200
        gw.terminate()
        time.sleep(0.5)
        ready = httpx.get(f"{gw.url}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"
        # Traffic still flows during the drain window: the load balancer has not caught up yet.
        assert httpx.get(f"{gw.url}/api/echo").status_code == 200
        assert httpx.get(f"{gw.url}/health/live").status_code == 200
        assert gw.proc.wait(30) == 0, gw.output()
    finally:
        gw.stop()


def test_killed_worker_is_respawned(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(basic_config(upstream.url), workers=2)
    before = gw.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    after: list[int] = []
    while time.monotonic() < deadline:
        after = gw.worker_pids()
        if len(after) == 2 and before[0] not in after:
            break
        time.sleep(0.2)
    assert len(after) == 2 and before[0] not in after, (before, after, gw.output())
    gw.wait_ready()
    with httpx.Client() as client:
        statuses = {client.get(f"{gw.url}/api/echo").status_code for _ in range(20)}
    assert statuses == {200}


def test_invalid_config_stops_startup_with_a_located_message(gateway_factory: GatewayFactory) -> None:
    config = basic_config("http://127.0.0.1:9")
    config["routes"][0]["timeout"] = "soon"
    gw = gateway_factory(config, workers=2, expect_failure=True)
    assert gw.proc.returncode == 2
    out = gw.output()
    assert str(gw.config_path) in out
    assert "routes[0].timeout" in out
