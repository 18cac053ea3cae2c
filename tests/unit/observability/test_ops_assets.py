"""The Grafana dashboard and the alert rules refer only to metrics the gateway exports."""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from tests.support.paths import REPO

ROOT = REPO / "observability"
# Every module that defines metric families: the core's, observability's and each plugin's.
METRIC_MODULES = ("hotpath/metrics.py", "observability/metrics.py", *(
    str(p.relative_to(REPO)) for p in sorted((REPO / "plugins").glob("*/metrics.py"))))
NAME = re.compile(r"\bgatehouse_[a-z0-9_]+\b")
LABEL_MATCHERS = re.compile(r"\{[^}]*\}")


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, for every family the gateway defines."""
    out: dict[str, set[str]] = {}
    families = [obj for path in METRIC_MODULES
                for obj in vars(importlib.import_module(path.removesuffix(".py").replace("/", "."))).values()]
    for obj in families:
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, kind, labels = obj._name, obj._type, set(obj._labelnames)
        if kind == "counter":
            out[f"{name}_total"] = labels
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            out[name] = labels
    return out


def check_expr(expr: str) -> None:
    series = exported_series()
    names = NAME.findall(expr)
    assert names, f"no gatehouse metric in {expr!r}"
    for name in names:
        assert name in series, f"{name} is not exported (expression: {expr})"
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    # Every label matched on a series must be one of its labels.
    for m in re.finditer(r"(gatehouse_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", m.group(2)):
            assert label in series[m.group(1)], f"{m.group(1)} has no label {label}"
    for m in re.finditer(r"by \(([^)]*)\)", expr):
        known = set().union(*(series[n] for n in names))
        for label in (x.strip() for x in m.group(1).split(",")):
            assert label in known, f"grouping by unknown label {label} in {expr}"


def test_dashboard_panels_use_exported_metrics() -> None:
    dash: dict[str, Any] = json.loads((ROOT / "grafana" / "gatehouse.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    for required in ("Request rate", "latency percentiles", "4xx", "5xx", "Breaker state", "Rate-limit rejections",
                     "Cache hit ratio", "Redis latency"):
        assert any(required in t for t in titles), f"no panel for {required}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expr(target["expr"])


def test_alert_rules_use_exported_metrics() -> None:
    doc = yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"GatehouseCircuitBreakerOpen", "GatehouseHighCacheMissRatio", "GatehouseHigh5xxRate",
            "GatehouseRedisFailOpen"} <= names
    for rule in rules:
        check_expr(rule["expr"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    breaker = next(r for r in rules if r["alert"] == "GatehouseCircuitBreakerOpen")
    assert breaker["for"] == "5m"


def test_checker_rejects_unknown_metric() -> None:
    import pytest

    with pytest.raises(AssertionError):
        check_expr("rate(gatehouse_no_such_metric_total[5m])")
    with pytest.raises(AssertionError):
        check_expr('rate(gatehouse_requests_total{path="/x"}[5m])')
