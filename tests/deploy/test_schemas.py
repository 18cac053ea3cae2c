"""Every rendered manifest validates against the Kubernetes schemas (strict: no unknown fields)."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.manifests import Doc, Manifests

# Oldest supported Kubernetes (matchLabelKeys in topology spread and the PDB's
# unhealthyPodEvictionPolicy are on by default from 1.27) and the newest schema shipped.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL_SELECTOR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
# The ServiceMonitor CRD (monitoring.coreos.com/v1) ships with Prometheus Operator, not with
# kubernetes-validate: this is the subset of its OpenAPI schema that our manifest uses, with
# the CRD's own types and patterns, closed so a misspelt field fails.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}


def _validate(doc: Doc, version: str) -> None:
    if doc["kind"] == "ServiceMonitor":
        jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        return
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_every_manifest_validates(rendered: dict[str, Manifests], target: str, version: str) -> None:
    errors = []
    for doc in rendered[target].docs:
        try:
            _validate(doc, version)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{doc['kind']} {doc['apiVersion']}: no schema in Kubernetes {version}")
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_validation_rejects_a_misspelt_field(rendered: dict[str, Manifests]) -> None:
    """The strict schemas are really applied: one typo in a probe fails."""
    import copy

    doc = copy.deepcopy(rendered["prod"].gateway)
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc, KUBERNETES_VERSIONS[0])
    monitor = copy.deepcopy(rendered["prod"].one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor, KUBERNETES_VERSIONS[0])


def test_overlays_are_namespaced_and_labelled(overlay: Manifests) -> None:
    namespaces = {d["metadata"].get("namespace") for d in overlay.docs}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    for d in overlay.docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gatehouse", d["metadata"]["name"]
