"""Security response headers from default_plugins, in a 2-worker gateway: on proxied
responses, on local answers (a preflight, a refusal, a switched-off route), on the
proxy's errors and on answers that match no route; the upstream's own value wins unless
the route overrides it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, Upstream, free_port

pytestmark = pytest.mark.integration

EXPECTED = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
SECRET = "security-headers-test-secret-0123456789"


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    timeouts = {"connect": 1, "read": 5, "total": 10}
    config: dict[str, Any] = {
        "services": {
            "backend": {"urls": [upstream.url], "timeouts": timeouts},
            "gone": {"urls": [f"http://127.0.0.1:{free_port()}"], "timeouts": timeouts},
        },
        "plugins": {"auth": {"providers": {"hs": {"algorithms": ["HS256"], "secret": SECRET}}}},
        "default_plugins": {"security_headers": {}},
        "routes": [
            {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True,
             "plugins": {"cors": {"origins": ["https://app.example"]}}},
            {"name": "mine", "path": "/mine", "service": "backend", "strip_prefix": True,
             "plugins": {"security_headers": {"override": True}}},
            {"name": "private", "path": "/private", "service": "backend", "plugins": {"auth": {}}},
            {"name": "gone", "path": "/gone", "service": "gone"},
            {"name": "off", "path": "/off", "service": "backend"},
            {"name": "bare", "path": "/bare", "service": "backend", "strip_prefix": True,
             "plugins": {"security_headers": False}},
        ],
    }
    return gateway_factory(config, workers=2, env={"ROUTES_DISABLED": "off"})


def assert_secured(r: httpx.Response, **expected: str) -> None:
    want = {**EXPECTED, **{k.replace("_", "-"): v for k, v in expected.items()}}
    for name, value in want.items():
        assert r.headers.get_list(name) == [value], (r.status_code, name, r.headers)


def test_proxied_responses(gw: Gateway) -> None:
    with httpx.Client(timeout=5) as c:
        for _ in range(6):  # both workers
            r = c.get(f"{gw.url}/api/echo/x")
            assert r.status_code == 200
            assert_secured(r)


def test_local_answers_and_errors(gw: Gateway) -> None:
    with httpx.Client(timeout=5) as c:
        preflight = c.options(f"{gw.url}/api/x", headers={"origin": "https://app.example",
                                                            "access-control-request-method": "GET"})
        assert preflight.status_code == 204
        assert_secured(preflight)
        refused = c.get(f"{gw.url}/private")
        assert refused.status_code == 401
        assert_secured(refused)
        bad_gateway = c.get(f"{gw.url}/gone/x")
        assert bad_gateway.status_code == 502
        assert_secured(bad_gateway)
        switched_off = c.get(f"{gw.url}/off")
        assert switched_off.status_code == 404
        assert_secured(switched_off)
        for target, status in (("/nowhere", 404), ("/a%2fb", 400)):
            r = c.get(f"{gw.url}{target}")
            assert r.status_code == status
            assert_secured(r)


def test_the_upstream_value_wins_unless_the_route_overrides(gw: Gateway) -> None:
    query = "h=content-security-policy:default-src%20'self'&h=x-frame-options:SAMEORIGIN"
    with httpx.Client(timeout=5) as c:
        kept = c.get(f"{gw.url}/api/with-headers?{query}")
        assert_secured(kept, content_security_policy="default-src 'self'", x_frame_options="SAMEORIGIN")
        replaced = c.get(f"{gw.url}/mine/with-headers?{query}")
        assert_secured(replaced)


def test_a_route_can_switch_them_off(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/bare/echo/x", timeout=5)
    assert r.status_code == 200
    assert not any(name in r.headers for name in EXPECTED)
