"""What reaches the pods (Services, NetworkPolicy, ServiceMonitor), how they scale, and Redis."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from controlplane.config.loader import RESERVED_PATHS
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import is_cluster
from observability import metrics
from tests.deploy.manifests import EXTERNAL_SECRETS, K8S, Doc, Manifests, gateway_config, labels_match, pod_environment

ADMIN_PORT = 8081
SECRETS = EXTERNAL_SECRETS
ADAPTER_VALUES = K8S / "components" / "hpa-requests-per-second" / "prometheus-adapter-values.yaml"


def _pod_labels(m: Manifests) -> dict[str, str]:
    labels: dict[str, str] = m.gateway["spec"]["template"]["metadata"]["labels"]
    return labels


def _services_of_gateway(m: Manifests) -> list[Doc]:
    return [s for s in m.all("Service") if labels_match(s["spec"].get("selector", {}), _pod_labels(m))]


def _admin_listener(m: Manifests) -> tuple[str, int]:
    env = pod_environment(m, {}, {**SECRETS, "gatehouse-redis/url": "redis://r:6379"})
    section: Any = gateway_config(m, env).gateway.admin  # a dict until the admin section is typed
    host = getattr(section, "host", None) if not isinstance(section, dict) else section.get("host")
    port = getattr(section, "port", None) if not isinstance(section, dict) else section.get("port")
    return str(host or "127.0.0.1"), int(port or ADMIN_PORT)


def test_services_expose_only_the_gateway_port(overlay: Manifests) -> None:
    host, admin_port = _admin_listener(overlay)
    container_ports = {p["name"]: p["containerPort"] for p in overlay.container["ports"]}
    assert admin_port not in container_ports.values()
    services = _services_of_gateway(overlay)
    assert {s["metadata"]["name"] for s in services} == {"gatehouse", "gatehouse-metrics"}
    for svc in services:
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in container_ports or target in container_ports.values(), port
            resolved = container_ports.get(target, target)
            assert resolved != admin_port, f"Service {svc['metadata']['name']} exposes the admin port"
    # The admin API listens on loopback (reached by `kubectl port-forward`) unless made otherwise.
    assert host in ("127.0.0.1", "::1", "localhost"), f"admin listens on {host}: keep it on loopback"


def test_gateway_service_reaches_only_gateway_pods(overlay: Manifests) -> None:
    svc = overlay.one("Service", "gatehouse")
    for deployment in overlay.all("Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selected = labels_match(svc["spec"]["selector"], pod_labels)
        assert selected == (deployment["metadata"]["name"] == "gatehouse"), deployment["metadata"]["name"]


def test_network_policy_admits_only_the_gateway_port(overlay: Manifests) -> None:
    policies = [
        p for p in overlay.all("NetworkPolicy")
        if labels_match(p["spec"]["podSelector"]["matchLabels"], _pod_labels(overlay))
    ]
    assert len(policies) == 1
    spec = policies[0]["spec"]
    assert "Ingress" in spec["policyTypes"]
    ports = [p for rule in spec["ingress"] for p in rule["ports"]]
    assert ports == [{"port": "http", "protocol": "TCP"}]


def test_service_monitor_scrapes_metrics_through_the_headless_service(overlay: Manifests) -> None:
    monitor = overlay.one("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    matched = [s for s in overlay.all("Service") if labels_match(selector, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in matched] == ["gatehouse-metrics"], "scrape exactly one Service"
    service = matched[0]
    assert service["spec"]["clusterIP"] == "None", "headless: Prometheus sees every pod"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics" and "/metrics" in RESERVED_PATHS


def test_hpa_scales_the_gateway_on_cpu_and_scales_down_slowly(overlay: Manifests) -> None:
    hpa = overlay.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gatehouse"}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 40 <= cpu[0]["resource"]["target"]["averageUtilization"] <= 85
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 180
    assert all(p["periodSeconds"] >= 60 for p in down["policies"])
    assert overlay.container["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"


def test_prod_hpa_also_scales_on_requests_per_second(rendered: dict[str, Manifests]) -> None:
    hpa = rendered["prod"].one("HorizontalPodAutoscaler")
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert len(pods) == 1
    metric_name = pods[0]["pods"]["metric"]["name"]
    assert pods[0]["pods"]["target"]["type"] == "AverageValue"
    # The adapter rule turns the gateway's request counter into that per-pod rate.
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    rule = next(r for r in rules if r["name"]["as"] == metric_name)
    counter = metrics.REQUESTS
    assert counter._type == "counter" and rule["seriesQuery"].startswith(counter._name + "_total{")
    assert "rate(" in rule["metricsQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    # The dev overlay leaves the optional metric out.
    dev_metrics = rendered["dev"].one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert all(m["type"] == "Resource" for m in dev_metrics)


def test_pdb_lets_nodes_drain_one_pod_at_a_time(overlay: Manifests) -> None:
    pdb = overlay.one("PodDisruptionBudget")
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], _pod_labels(overlay))
    assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_dev_runs_its_own_redis_reachable_only_by_the_gateway(rendered: dict[str, Manifests]) -> None:
    dev = rendered["dev"]
    env = pod_environment(dev, {}, {})
    url = urlsplit(env["REDIS_URL"])
    assert url.scheme == "redis"
    service = dev.one("Service", url.hostname)
    assert [p["port"] for p in service["spec"]["ports"]] == [url.port or 6379]
    redis = dev.one("Deployment", "redis")
    assert redis["spec"]["replicas"] == 1
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert labels_match(service["spec"]["selector"], pod_labels)
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("redis:") and ":latest" not in container["image"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policy = dev.one("NetworkPolicy", "redis")
    sources = [f["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"] for f in rule["from"]]
    assert sources and all(labels_match(s, _pod_labels(dev)) for s in sources)


def test_prod_uses_an_external_redis_by_url(rendered: dict[str, Manifests]) -> None:
    prod = rendered["prod"]
    assert not [d for d in prod.all("Deployment") if d["metadata"]["name"] != "gatehouse"]
    assert prod.find("Secret", "gatehouse-redis") is None, "production secrets are never generated from git"
    ref = next(v for v in prod.container["env"] if v["name"] == "REDIS_URL")["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "gatehouse-redis" and not ref.get("optional", False)


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis+cluster://redis.example:6379", True),
        ("rediss+cluster://:pw@redis.example:6379", True),
        ("rediss://:pw@redis.example:6379/0", False),
        ("redis://redis:6379/0", False),
    ],
)
def test_the_url_scheme_chooses_cluster_mode(rendered: dict[str, Manifests], url: str, cluster: bool) -> None:
    """What docs/deployment.md promises for the gatehouse-redis Secret's url."""
    env = pod_environment(rendered["prod"], {}, {**SECRETS, "gatehouse-redis/url": url})
    redis: RedisConfig = gateway_config(rendered["prod"], env).gateway.redis
    assert redis.url == url
    assert is_cluster(redis) is cluster


def test_prod_config_differs_from_base_only_in_redis() -> None:
    """overlays/prod/gatehouse.yaml replaces the base file whole; keep them from drifting."""
    base = yaml.safe_load((K8S / "base" / "gatehouse.yaml").read_text())
    prod = yaml.safe_load((K8S / "overlays" / "prod" / "gatehouse.yaml").read_text())
    assert base.pop("redis") != prod.pop("redis")
    assert base == prod
