"""The access-control scenarios (api-key, forward-auth, signed-url, security-headers) start
and pass their probes against a real gateway (2 workers) and the real nginx upstream,
without any load: what the harness would check before measuring them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import scenarios, services
from bench.harness.scenarios import Context, Probe


@pytest.fixture(scope="module")
def upstream() -> Iterator[services.NginxUpstream]:
    nginx = services.NginxUpstream()
    yield nginx
    nginx.stop()


NAMES = ["api-key", "forward-auth", "signed-url", "security-headers"]


@pytest.mark.parametrize("name", NAMES)
def test_the_scenario_starts_and_its_probes_pass(upstream: services.NginxUpstream, name: str) -> None:
    scenario = scenarios.BY_NAME[name]
    ctx = Context(upstream_url=upstream.url, otlp_endpoint=upstream.url, redis_url=None, jwt_secret="s" * 48,
                  tokens=[], api_keys=[f"bench-key-{i:04d}-0123456789" for i in range(20)])
    config = scenarios.gateway_config(scenario.features, ctx)
    scenarios.check_compiles(config, workers=2)
    gateway = services.start_gateway(config, workers=2, env={})
    try:
        headers = {"x-api-key": ctx.api_keys[3]} if scenario.credentials == "api_key" else {}
        probe = Probe(gateway.url, headers, scenarios.request_path(scenario.features, ctx),
                      authz_calls=upstream.authz_calls)
        probes = scenario.probes()
        assert probes, name
        for check in probes:
            check(probe)
    finally:
        services.stop_gateway(gateway)


def test_a_probe_refuses_a_scenario_whose_feature_is_idle(upstream: services.NginxUpstream) -> None:
    ctx = Context(upstream_url=upstream.url, otlp_endpoint=upstream.url, redis_url=None, jwt_secret="s" * 48,
                  tokens=[], api_keys=["k" * 20])
    config = scenarios.gateway_config(scenarios.Features(), ctx)  # bare: nothing to find
    gateway = services.start_gateway(config, workers=2, env={})
    try:
        probe = Probe(gateway.url, {}, authz_calls=upstream.authz_calls)
        for check in (scenarios.probe_signed_url, scenarios.probe_security_headers, scenarios.probe_forward_auth):
            with pytest.raises(scenarios.Unavailable):
                check(probe)
    finally:
        services.stop_gateway(gateway)
