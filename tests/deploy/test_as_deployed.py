"""The prod overlay's pod, run for real: its entrypoint, config, env, probes and drain.

The gateway runs from the image's ENTRYPOINT/CMD with the prod pod's environment (two
workers: the CPU limit), a real redis-server and a real upstream (tests/deploy/pod.py).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.deploy.manifests import EXTERNAL_SECRETS, Dockerfile, Manifests, exec_form, gateway_config
from tests.deploy.pod import DeployedPod, writable_files
from tests.support.processes import RedisServer, Upstream, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pod(
    rendered: dict[str, Manifests],
    dockerfile: Dockerfile,
    redis_server: RedisServer,
    upstream: Upstream,
    native_build: Path,
) -> Iterator[DeployedPod]:
    p = DeployedPod(
        rendered["prod"], dockerfile, redis_url=redis_server.url,
        service_urls={"users": upstream.url, "catalog": upstream.url}, native_dir=native_build,
    )
    yield p
    p.stop()


def _token(subject: str = "user-1", **claims: Any) -> str:
    secret = EXTERNAL_SECRETS["gatehouse-secrets/jwt-secret"]
    return jwt.encode({"sub": subject, "exp": int(time.time()) + 300, **claims}, secret, algorithm="HS256")


def test_runs_the_cpu_derived_worker_count(pod: DeployedPod) -> None:
    assert pod.workers == 2
    assert len(pod.pids()) == 1 + pod.workers, pod.output()


def test_every_worker_runs_the_compiled_hot_path(pod: DeployedPod) -> None:
    """The image requires the compiled build (GATEHOUSE_NATIVE=require): every worker uses it."""
    assert pod.env["GATEHOUSE_NATIVE"] == "require"
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(200):
        body = httpx.get(f"{pod.url}/health", timeout=2).json()
        seen[body["pid"]] = body["native"]
        if len(seen) == pod.workers:
            break
    assert len(seen) == pod.workers, seen
    assert all(native["active"] is True for native in seen.values()), seen


def test_every_probe_answers(pod: DeployedPod) -> None:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        response = httpx.get(pod.probe_url(probe), timeout=2)
        assert response.status_code == 200, (probe, response.text)
        assert response.headers["content-type"].startswith("application/json")


def test_image_healthcheck_command(pod: DeployedPod, dockerfile: Dockerfile) -> None:
    argv = exec_form((dockerfile.final.last("HEALTHCHECK") or "").partition("CMD ")[2])
    healthy = subprocess.run(argv, env=pod.env, capture_output=True, timeout=10, check=False)
    assert healthy.returncode == 0, healthy.stderr
    dead = subprocess.run(
        argv, env={**pod.env, "GATEHOUSE_PORT": str(free_port())}, capture_output=True, timeout=10, check=False
    )
    assert dead.returncode != 0


def test_shipped_routes_work_with_auth_limits_and_cache(pod: DeployedPod) -> None:
    with httpx.Client(base_url=pod.url, timeout=5) as client:
        anonymous = client.get("/api/catalog/items")
        assert anonymous.status_code == 200, anonymous.text
        assert anonymous.json()["path"] == "/api/catalog/items"
        refused = client.get("/api/users/me")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
        allowed = client.get("/api/users/me", headers={"authorization": f"Bearer {_token()}"})
        assert allowed.status_code == 200, allowed.text
        assert "x-ratelimit-limit" in allowed.headers


def test_metrics_are_served_where_the_service_monitor_scrapes(pod: DeployedPod) -> None:
    monitor = pod.manifests.one("ServiceMonitor")
    path = monitor["spec"]["endpoints"][0]["path"]
    httpx.get(f"{pod.url}/api/catalog/metrics-probe", timeout=5)
    # Request counts are published by each worker every observability.metrics.publish_interval
    # (0.5 s), so a scrape answered by the other worker may lag by that much.
    deadline = time.monotonic() + 5
    while True:
        body = httpx.get(f"{pod.url}{path}", timeout=5)
        assert body.status_code == 200
        if "gatehouse_requests_total" in body.text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "gatehouse_requests_total" in body.text
    assert list(pod.metrics_dir.glob("*.db")), "multiprocess metrics belong in the emptyDir"


def test_writes_only_to_the_writable_volumes(pod: DeployedPod) -> None:
    """What readOnlyRootFilesystem needs: every file the pod writes lives in an emptyDir."""
    httpx.get(f"{pod.url}/api/catalog/write-check", timeout=5)
    allowed = (str(pod.tmp), str(pod.metrics_dir))
    seen = [path for pid in pod.pids() for path in writable_files(pid)]
    assert seen, "the workers hold their metric files open for writing: the check must see them"
    outside = [path for path in seen if not path.startswith(allowed)]
    assert not outside, f"written outside the emptyDir volumes: {outside}"
    assert list(pod.workdir.iterdir()) == [], "nothing may be written to the working directory"


def test_rollout_termination_drops_no_request(
    rendered: dict[str, Manifests], dockerfile: Dockerfile, redis_server: RedisServer, native_build: Path
) -> None:
    """The kubelet's sequence with the shipped timings: after preStop, SIGTERM; readiness
    turns false within the drain delay while requests are still served; an in-flight
    request that outlives the drain delay completes; the pod exits on its own before
    terminationGracePeriodSeconds."""
    m = rendered["prod"]
    loaded = gateway_config(m, {**_pod_env_for_config(m), "REDIS_URL": redis_server.url})
    server = loaded.gateway.server
    grace = m.pod_spec["terminationGracePeriodSeconds"]
    pre_stop = int(m.container["lifecycle"]["preStop"]["exec"]["command"][1])
    slow = Upstream()
    try:
        pod = DeployedPod(m, dockerfile, redis_url=redis_server.url,
                          service_urls={"users": slow.url, "catalog": slow.url}, native_dir=native_build)
    except BaseException:
        slow.stop()
        raise
    try:
        # Longer than the drain delay, so it is still running when accept stops, and within
        # the users service's read timeout.
        in_flight_seconds = server.drain_delay + 2
        assert in_flight_seconds < loaded.services["users"].timeouts.read
        slow.control(mode="slow", delay=in_flight_seconds)
        result: dict[str, Any] = {}

        def long_request() -> None:
            try:
                r = httpx.get(f"{pod.url}/api/users/slow", timeout=in_flight_seconds + 15,
                              headers={"authorization": f"Bearer {_token()}"})
                result["status"] = r.status_code
            except httpx.HTTPError as exc:
                result["error"] = repr(exc)

        thread = threading.Thread(target=long_request)
        thread.start()
        deadline = time.monotonic() + 5
        while slow.stats()["total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.stats()["total"] == 1, "the long request never reached the upstream"
        slow.control(mode="ok")

        terminated_at = time.monotonic()
        pod.terminate()
        readiness = m.container["readinessProbe"]
        seen_unready = None
        while time.monotonic() - terminated_at < server.drain_delay - 0.5:
            if httpx.get(pod.probe_url("readinessProbe"), timeout=2).status_code == 503:
                seen_unready = time.monotonic() - terminated_at
                break
            time.sleep(0.1)
        assert seen_unready is not None and seen_unready <= readiness["periodSeconds"], pod.output()
        # The load balancer may still send traffic during the drain delay: it is served.
        assert httpx.get(pod.probe_url("livenessProbe"), timeout=2).status_code == 200
        assert httpx.get(f"{pod.url}/api/catalog/during-drain", timeout=5).status_code == 200

        thread.join(in_flight_seconds + 20)
        assert result == {"status": 200}, (result, pod.output())
        assert pod.proc.wait(grace) == 0, pod.output()
        assert time.monotonic() - terminated_at < grace - pre_stop
    finally:
        pod.stop()
        slow.stop()


def _pod_env_for_config(m: Manifests) -> dict[str, str]:
    from tests.deploy.manifests import pod_environment

    return pod_environment(m, {}, EXTERNAL_SECRETS)
