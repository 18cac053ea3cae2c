"""Every harness scenario is runnable in this tree (bench/harness/scenarios.py).

If a feature's configuration keys change, the harness would report its scenarios "not
available"; this test fails instead, so the harness and the features cannot drift apart.
"""

from __future__ import annotations

import pytest
import yaml

from bench.harness import scenarios
from bench.harness.scenarios import Context, Unavailable


def _context(redis: bool = True) -> Context:
    return Context(
        upstream_url="http://127.0.0.1:9",
        otlp_endpoint="http://127.0.0.1:9",
        redis_url="redis://127.0.0.1:9" if redis else None,
        jwt_secret="s" * 48,
        tokens=["t"],
        api_keys=["k"],
    )


GATEWAY_SCENARIOS = [s for s in scenarios.SCENARIOS if s.kind == "gateway"]


@pytest.mark.parametrize("scenario", GATEWAY_SCENARIOS, ids=[s.name for s in GATEWAY_SCENARIOS])
def test_scenario_features_have_landed_and_its_config_compiles(scenario: scenarios.Scenario) -> None:
    assert scenarios.landing_problems(scenario) == []
    config = scenarios.gateway_config(scenario.features, _context())
    scenarios.check_compiles(config, workers=2)


def test_a_scenario_needing_redis_without_redis_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="Redis"):
        scenarios.gateway_config(scenarios.FULL, _context(redis=False))


def test_a_rejected_configuration_is_reported_with_the_field() -> None:
    config = scenarios.gateway_config(scenarios.Features(metrics=True), _context())
    config["routes"][0]["plugins"]["no_such_plugin"] = {}
    with pytest.raises(Unavailable, match=r"configuration rejected.*no_such_plugin"):
        scenarios.check_compiles(config, workers=2)


def test_bare_runs_without_redis_and_with_telemetry_explicitly_off() -> None:
    bare = scenarios.BY_NAME["bare"]
    config = scenarios.gateway_config(bare.features, _context(redis=False))
    assert "redis" not in config
    obs = config["observability"]
    assert obs["metrics"] == {"enabled": False}
    assert obs["access_log"] == {"enabled": False}
    assert obs["tracing"] == {"enabled": False}
    scenarios.check_compiles(config, workers=2)


def test_probes_follow_the_features() -> None:
    full = scenarios.BY_NAME["full"].probes()
    assert {p.__name__ for p in full} == {"probe_auth", "probe_rate_limit", "probe_breaker", "probe_metrics"}
    assert [p.__name__ for p in scenarios.BY_NAME["bare"].probes()] == ["probe_metrics_off"]
    assert scenarios.BY_NAME["nginx-proxy"].probes() == []
    names = {name: [p.__name__ for p in scenarios.BY_NAME[name].probes()]
             for name in ("api-key", "forward-auth", "signed-url", "security-headers")}
    assert names == {
        "api-key": ["probe_auth", "probe_metrics_off"],
        "forward-auth": ["probe_auth", "probe_forward_auth", "probe_metrics_off"],
        "signed-url": ["probe_signed_url", "probe_metrics_off"],
        "security-headers": ["probe_security_headers", "probe_metrics_off"],
    }


def test_the_signed_scenario_requests_a_url_its_gateway_accepts() -> None:
    from controlplane.build import build_gateway, new_runtime
    from controlplane.config.loader import load_config_text
    from plugins.signed_url import SignedUrlPlugin

    ctx = _context(redis=False)
    features = scenarios.BY_NAME["signed-url"].features
    loaded = load_config_text(yaml.safe_dump(scenarios.gateway_config(features, ctx)), "<bench>", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    plugin = gateway.table.routes[0].chain.plugins[0]
    assert isinstance(plugin, SignedUrlPlugin)
    path, _, query = scenarios.request_path(features, ctx).partition("?")
    assert path == scenarios.PATH and query
    plugin._signer.verify("GET", path, query.encode(), b"")  # raises if the URL were refused


def test_access_log_lines_are_recognised() -> None:
    out = 'gatehouse: listening\n{"ts":"x","request_id":"a","status":200}\nnot json\n{"request_id":"b","status":404}\n'
    assert scenarios.access_log_lines(out) == 2


