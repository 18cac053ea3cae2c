"""The gateway Deployment agrees with the gateway: ports, probes, drain timing, workers, security.

The configuration is the ConfigMap the pod mounts, loaded by the gateway's own loader with
the environment the pod really gets (image ENV, envFrom, env, Secrets), so an env var that
overrides the file is taken into account exactly as at startup.
"""

from __future__ import annotations

import math
import re

import pytest

from controlplane.cli import check_state_backend
from controlplane.config.loader import LoadedConfig
from tests.deploy.manifests import (
    EXTERNAL_SECRETS,
    Dockerfile,
    Manifests,
    cpu_cores,
    exec_form,
    gateway_config,
    in_pod_environment,
    labels_match,
    pod_environment,
)

LIVE, READY = "/health/live", "/health/ready"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def pod_env(overlay: Manifests, dockerfile: Dockerfile) -> dict[str, str]:
    return pod_environment(overlay, dockerfile.final.env(), EXTERNAL_SECRETS)


@pytest.fixture(scope="module")
def loaded(overlay: Manifests, pod_env: dict[str, str]) -> LoadedConfig:
    return gateway_config(overlay, pod_env)


def _container_port(m: Manifests, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in m.container["ports"] if p["name"] == port]
    assert len(named) == 1, f"{m.name}: no container port named {port}"
    return int(named[0])


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_listens_where_the_pod_says(overlay: Manifests, loaded: LoadedConfig) -> None:
    server = loaded.gateway.server
    assert server.host == "0.0.0.0", "a pod must listen on all interfaces, not loopback"
    ports = overlay.container["ports"]
    assert [p["name"] for p in ports] == ["http"], "only the gateway port is declared on the container"
    assert _container_port(overlay, "http") == server.port


def test_probes_hit_the_gateways_health_endpoints(overlay: Manifests, loaded: LoadedConfig) -> None:
    c = overlay.container
    expected = {"startupProbe": LIVE, "livenessProbe": LIVE, "readinessProbe": READY}
    for probe, path in expected.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{probe} must ask {path}"
        assert _container_port(overlay, get["port"]) == loaded.gateway.server.port, probe
        assert get.get("scheme", "HTTP") == "HTTP"
    # Liveness must never depend on Redis or upstreams (only /health/ready does), or a Redis
    # outage would restart every pod at once.
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 20


def test_drain_fits_in_the_grace_period(overlay: Manifests, loaded: LoadedConfig) -> None:
    """preStop, then SIGTERM: readiness false for drain_delay, then in-flight requests get
    shutdown_grace (Granian's workers_kill_timeout is its ceiling). All of it must end before
    the kubelet's SIGKILL at terminationGracePeriodSeconds."""
    server = loaded.gateway.server
    pre_stop = exec_form_sleep(overlay.container["lifecycle"]["preStop"])
    grace = overlay.pod_spec["terminationGracePeriodSeconds"]
    needed = pre_stop + server.drain_delay + math.ceil(server.shutdown_grace)
    assert grace > needed, f"terminationGracePeriodSeconds {grace} <= preStop + drain + grace = {needed}"
    assert pre_stop >= 3, "endpoints need a few seconds to forget a terminating pod"
    assert server.drain_delay > 0, "readiness must turn false before listeners close"
    readiness = overlay.container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= server.drain_delay, (
        "the kubelet must see readiness fail within the drain delay"
    )
    # After accept stops, a worker finishes its in-flight requests and then flushes queued
    # audit events; both must fit in shutdown_grace, or a rollout cuts them short.
    flush = loaded.gateway.audit.shutdown_timeout
    for name, svc in loaded.services.items():
        assert svc.timeouts.total + flush <= server.shutdown_grace, (
            f"services.{name}.timeouts.total + audit.shutdown_timeout > server.shutdown_grace"
        )


def exec_form_sleep(pre_stop: dict[str, object]) -> int:
    if "sleep" in pre_stop:
        seconds = pre_stop["sleep"]
        assert isinstance(seconds, dict)
        return int(seconds["seconds"])
    command = pre_stop["exec"]
    assert isinstance(command, dict)
    argv = command["command"]
    assert isinstance(argv, list) and re.fullmatch(r"(/bin/)?sleep", argv[0]) and len(argv) == 2, argv
    return int(argv[1])


def test_workers_follow_the_cpu_limit(overlay: Manifests, loaded: LoadedConfig) -> None:
    c = overlay.container
    source = next(v for v in c["env"] if v["name"] == "GATEHOUSE_WORKERS")["valueFrom"]["resourceFieldRef"]
    assert source["resource"] == "limits.cpu" and source["containerName"] == c["name"]
    assert cpu_cores(source["divisor"]) == 1
    limit = cpu_cores(c["resources"]["limits"]["cpu"])
    assert loaded.gateway.server.workers == math.ceil(limit)
    # requests == limits: Guaranteed QoS, so every worker has its CPU.
    assert c["resources"]["requests"] == c["resources"]["limits"]
    memory = _memory_bytes(c["resources"]["limits"]["memory"])
    assert memory / loaded.gateway.server.workers >= 256 * MiB, "each worker needs ~150 MiB plus headroom"


def test_the_gateway_builds_from_the_shipped_config(overlay: Manifests, pod_env: dict[str, str]) -> None:
    """What `gatehouse run` does before forking: plugins validate their cross-field rules
    (an HS256 secret of 32+ bytes, known policies) with the pod's environment. Built on
    the in-process backend so no Redis client is made here (tests/deploy/test_as_deployed.py
    runs the same config against a real Redis)."""
    from controlplane.build import build_gateway, new_runtime

    loaded = gateway_config(overlay, pod_env, overrides={"state.backend": "memory"})
    with in_pod_environment(pod_env):
        gateway, services = build_gateway(loaded, new_runtime(loaded))
    assert set(services) == set(loaded.services)
    assert {r["name"] for r in gateway.table.describe()} == {r.config.name for r in loaded.routes}


def test_shared_state_is_redis_so_workers_and_pods_agree(loaded: LoadedConfig) -> None:
    assert loaded.state_backend == "redis"
    assert "Redis" in check_state_backend(loaded, loaded.gateway.server.workers)


def test_secrets_come_from_secret_refs(overlay: Manifests) -> None:
    env = {v["name"]: v for v in overlay.container["env"]}
    for var, key in (
        ("REDIS_URL", "url"),
        ("JWT_SECRET", "jwt-secret"),
        ("GATEHOUSE_ADMIN_TOKEN", "admin-token"),
        ("GATEHOUSE_USER_HASH_KEY", "user-hash-key"),
        ("AUDIT_EVENT_SINK_TOKEN", "audit-sink-token"),
    ):
        assert var in env, var
        assert "value" not in env[var], f"{var} must not be a literal in the manifest"
        assert env[var]["valueFrom"]["secretKeyRef"]["key"] == key
    for cm in overlay.all("ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert not re.search(r"(?i)(password|token|secret)\s*[:=]\s*\S{6,}", f"{key}={value}"), key


def test_runs_non_root_read_only_without_privileges(overlay: Manifests) -> None:
    pod = overlay.pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["runAsGroup"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    sc = overlay.container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert overlay.pod_spec["automountServiceAccountToken"] is False


def test_every_writable_path_is_an_emptydir(overlay: Manifests, pod_env: dict[str, str]) -> None:
    volumes = {v["name"]: v for v in overlay.pod_spec["volumes"]}
    writable = {
        vm["mountPath"]: volumes[vm["name"]]
        for vm in overlay.container["volumeMounts"]
        if not vm.get("readOnly", False)
    }
    for path, volume in writable.items():
        assert "sizeLimit" in volume.get("emptyDir", {}), f"{path} must be a bounded emptyDir"
    for var in ("TMPDIR", "PROMETHEUS_MULTIPROC_DIR"):
        value = pod_env[var]
        assert any(value == p or value.startswith(p + "/") for p in writable), f"{var}={value} is read-only"


def test_no_fixed_replica_count_fights_the_hpa(overlay: Manifests) -> None:
    assert "replicas" not in overlay.gateway["spec"]
    strategy = overlay.gateway["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_spread_across_nodes(overlay: Manifests) -> None:
    labels = overlay.gateway["spec"]["template"]["metadata"]["labels"]
    spreads = overlay.pod_spec["topologySpreadConstraints"]
    by_key = {s["topologyKey"]: s for s in spreads}
    host = by_key["kubernetes.io/hostname"]
    assert host["whenUnsatisfiable"] == "DoNotSchedule" and host["maxSkew"] == 1
    for spread in spreads:
        assert labels_match(spread["labelSelector"]["matchLabels"], labels), spread


def test_image_env_and_pod_env_agree(dockerfile: Dockerfile, overlay: Manifests) -> None:
    image = dockerfile.final.env()
    pod = {v["name"]: v.get("value") for v in overlay.container["env"]}
    for var in ("GATEHOUSE_PORT", "TMPDIR", "PROMETHEUS_MULTIPROC_DIR"):
        assert pod.get(var) in (None, image[var]), f"{var}: pod {pod.get(var)} vs image {image[var]}"
    healthcheck = exec_form(dockerfile.final.last("HEALTHCHECK").partition("CMD ")[2])  # type: ignore[union-attr]
    assert "/health/live" in healthcheck[-1]
