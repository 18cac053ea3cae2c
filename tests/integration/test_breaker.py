"""Shared circuit breakers through the real gateway: two instances (pods) of 2 Granian
workers each on one real redis-server, in front of the controllable upstream; and one
gateway on a real 3-master Redis Cluster.

Each test uses its own service, so the module's gateways and Redis are started once.
Worker state is read from ``/health`` (pid and breakers) over fresh connections, which the
kernel spreads over the workers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, RedisCluster, RedisServer, Upstream

pytestmark = pytest.mark.integration

FLUSH = 0.02


def breaker_services(upstream: str) -> dict[str, Any]:
    def svc(total: float = 10, **breaker: Any) -> dict[str, Any]:
        return {
            "urls": [upstream],
            "timeouts": {"connect": 1, "read": total, "total": total},
            "breaker": {"flush_interval": FLUSH, **breaker},
        }

    return {
        "trip": svc(minimum_calls=5, failure_rate=50, open_duration=30),
        "seq40": svc(minimum_calls=5, failure_rate=50, open_duration=30),
        "seq60": svc(minimum_calls=5, failure_rate=50, open_duration=30),
        "min10": svc(minimum_calls=10, failure_rate=50, open_duration=30),
        "consec": svc(failure_rate=None, consecutive_failures=5, open_duration=30, successes_to_close=2),
        "probes": svc(minimum_calls=2, failure_rate=50, open_duration=1.5, half_open_probes=3, successes_to_close=3),
        "flip": svc(minimum_calls=2, failure_rate=50, open_duration=1, half_open_probes=2, successes_to_close=2),
        "hang": svc(total=4, minimum_calls=2, failure_rate=50, open_duration=0.5, probe_timeout=0.5),
    }


def config_for(redis_url: str, upstream: str) -> dict[str, Any]:
    services = breaker_services(upstream)
    return {
        "redis": {"url": redis_url, "command_timeout": 0.5},
        "services": services,
        "routes": [{"name": n, "path": f"/{n}", "service": n, "strip_prefix": True} for n in services],
    }


@pytest.fixture(scope="module")
def pods(redis_server: RedisServer, upstream: Upstream, gateway_factory: GatewayFactory) -> list[Gateway]:
    config = config_for(redis_server.url, upstream.url)
    return [gateway_factory(config, workers=2), gateway_factory(config, workers=2)]


def worker_states(gw: Gateway, service: str) -> dict[int, str]:
    """The breaker state each worker of ``gw`` reports, by pid."""
    states: dict[int, str] = {}
    for _ in range(60):
        body = httpx.get(f"{gw.url}/health", timeout=5).json()  # a new connection each time
        states[body["pid"]] = body["breakers"][service]
        if len(states) == 2:
            break
    assert len(states) == 2, "could not reach both workers"
    return states


def wait_states(gws: list[Gateway], service: str, state: str | frozenset[str], timeout: float = 5.0) -> None:
    wanted = frozenset({state}) if isinstance(state, str) else state
    deadline = time.monotonic() + timeout
    while True:
        seen = [worker_states(gw, service) for gw in gws]
        if all(s in wanted for states in seen for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"expected every worker {state}, saw {seen}")
        time.sleep(0.05)


def get(gw: Gateway, path: str, timeout: float = 10) -> httpx.Response:
    return httpx.get(f"{gw.url}{path}", timeout=timeout)


def assert_open(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "CIRCUIT_BREAKER_OPEN"
    assert int(r.headers["retry-after"]) >= 1


def test_failures_through_one_worker_open_every_worker_and_pod(pods: list[Gateway], upstream: Upstream) -> None:
    a = pods[0]
    with httpx.Client(base_url=a.url, timeout=5) as one_connection:  # keep-alive: one worker
        failing_pid = one_connection.get("/health").json()["pid"]
        for _ in range(5):
            assert one_connection.get("/trip/status/500").status_code == 500
        assert one_connection.get("/health").json()["pid"] == failing_pid
    wait_states(pods, "trip", "open", timeout=3)
    assert failing_pid in worker_states(a, "trip")
    upstream.reset()
    for gw in pods:
        for _ in range(6):
            assert_open(get(gw, "/trip/echo"))
    assert upstream.stats()["total"] == 0  # refused without reaching the upstream


def test_4xx_never_opens(pods: list[Gateway]) -> None:
    for _ in range(12):
        assert get(pods[0], "/consec/status/404").status_code == 404
    time.sleep(20 * FLUSH)
    wait_states(pods, "consec", "closed", timeout=1)


def test_resilience4j_sequences_through_the_gateway(pods: list[Gateway]) -> None:
    a, b = pods
    # S,S,S,F,F stays closed at 40%; the next failure opens at exactly 50%.
    for i, path in enumerate(("echo", "echo", "echo", "status/500", "status/500")):
        get(pods[i % 2], f"/seq40/{path}")
    time.sleep(20 * FLUSH)
    wait_states(pods, "seq40", "closed", timeout=1)
    assert get(b, "/seq40/status/500").status_code == 500
    wait_states(pods, "seq40", "open", timeout=3)

    # F,F,F,S,S opens at 60%.
    for i, path in enumerate(("status/500", "status/500", "status/500", "echo", "echo")):
        get(pods[i % 2], f"/seq60/{path}")
    wait_states(pods, "seq60", "open", timeout=3)

    # 9 failures below a 10-call minimum stay closed; the tenth opens.
    for i in range(9):
        assert get(pods[i % 2], "/min10/status/500").status_code == 500
    time.sleep(20 * FLUSH)
    wait_states(pods, "min10", "closed", timeout=1)
    get(a, "/min10/status/500")
    wait_states(pods, "min10", "open", timeout=3)


async def _burst(gws: list[Gateway], path: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=gw.url, timeout=15, limits=limits) for gw in gws]
    try:
        return await asyncio.gather(*(clients[i % len(clients)].get(path) for i in range(n)))
    finally:
        for c in clients:
            await c.aclose()


def test_half_open_admits_exactly_the_probes_then_closes(pods: list[Gateway], upstream: Upstream) -> None:
    for _ in range(2):
        get(pods[0], "/probes/status/500")
    wait_states(pods, "probes", "open", timeout=3)
    time.sleep(1.6)
    upstream.reset()
    # The probes take 3 s upstream, so none can finish (and close the breaker) while the
    # burst is still arriving.
    responses = asyncio.run(_burst(pods, "/probes/slow?delay=3", 50))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 3, statuses
    assert statuses.count(503) == 47, statuses
    for r in responses:
        if r.status_code == 503:
            assert_open(r)
    assert upstream.stats()["seen"].get("/slow") == 3
    wait_states(pods, "probes", "closed", timeout=3)
    assert get(pods[1], "/probes/echo").status_code == 200


def test_half_open_reopens_on_one_failure_and_closes_after_successes(pods: list[Gateway]) -> None:
    a, b = pods
    for _ in range(2):
        get(a, "/flip/status/500")
    wait_states(pods, "flip", "open", timeout=3)
    time.sleep(1.1)
    assert get(b, "/flip/status/500").status_code == 500  # the probe, failing
    wait_states(pods, "flip", "open", timeout=3)
    assert_open(get(a, "/flip/echo"))
    time.sleep(1.1)
    assert get(a, "/flip/echo").status_code == 200
    assert get(b, "/flip/echo").status_code == 200
    wait_states(pods, "flip", "closed", timeout=3)


def test_a_hanging_probe_does_not_keep_it_half_open(pods: list[Gateway]) -> None:
    a, b = pods
    for _ in range(2):
        get(a, "/hang/status/500")
    # Tripped everywhere. Its open period is only 0.5 s, shorter than polling four workers
    # can take on a loaded box, so a worker already reporting half_open counts too.
    wait_states(pods, "hang", frozenset({"open", "half_open"}), timeout=3)
    time.sleep(0.6)
    hung: list[int] = []
    thread = threading.Thread(target=lambda: hung.append(get(a, "/hang/hang", timeout=15).status_code))
    thread.start()
    try:
        deadline = time.monotonic() + 3.0  # the hanging call itself lasts 4 s
        recovered = False
        while time.monotonic() < deadline:
            time.sleep(0.1)
            r = get(b, "/hang/echo")
            if r.status_code == 200:
                recovered = True
                break
            assert_open(r)
        assert recovered, "the breaker stayed shut behind a hanging probe"
        assert thread.is_alive()  # recovery did not wait for the hanging call to end
        wait_states(pods, "hang", "closed", timeout=3)
    finally:
        thread.join(15)
    assert hung == [504]
    assert get(a, "/hang/echo").status_code == 200  # its late timeout did not reopen it


# -- Redis Cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(3)
    yield c
    c.stop()


def test_on_a_redis_cluster(cluster: RedisCluster, upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config_for(cluster.url, upstream.url), workers=2)
    for _ in range(2):
        get(gw, "/flip/status/500")
    wait_states([gw], "flip", "open", timeout=3)
    assert_open(get(gw, "/flip/echo"))
    time.sleep(1.1)
    assert get(gw, "/flip/echo").status_code == 200
    assert get(gw, "/flip/echo").status_code == 200
    wait_states([gw], "flip", "closed", timeout=3)
    # The breaker's one key lives on the master owning its hash tag's slot.
    slot = cluster.nodes[0].cli("cluster", "keyslot", "{flip}")
    owners = [n for n in cluster.nodes if n.cli("cluster", "countkeysinslot", slot) != "0"]
    assert len(owners) == 1
    assert owners[0].cli("exists", "gh:v1:cb:{flip}") == "1"


def test_without_redis_the_breaker_is_in_process(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    # The loader refuses in-process breakers with several workers (each would judge alone).
    config = config_for("unused", upstream.url)
    del config["redis"]
    gw = gateway_factory(config, workers=1)
    for _ in range(5):
        assert get(gw, "/trip/status/500").status_code == 500
    upstream.reset()
    assert_open(get(gw, "/trip/echo"))
    assert upstream.stats()["total"] == 0
    body = get(gw, "/health").json()
    assert body["breakers"]["trip"] == "open"
    assert body["status"] == "degraded"
