"""Route toggles and endpoint overrides from the environment, in a 2-worker gateway.

A route switched off answers 404 (and never falls through to a shorter prefix route), an
override sends a service's traffic to its canary, and an unknown name stops startup with
an error that names the variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, Upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def canary() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.stop()


def config(upstream: Upstream) -> dict[str, Any]:
    return {
        "services": {
            "users": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}},
            "jobs": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}},
        },
        "routes": [
            {"name": "api", "path": "/api", "service": "users", "strip_prefix": True},
            {"name": "admin", "path": "/api/admin", "service": "users", "strip_prefix": True},
            {"name": "jobs", "path": "/jobs", "service": "jobs", "strip_prefix": True},
        ],
    }


@pytest.fixture(scope="module")
def gw(upstream: Upstream, canary: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    env = {"ROUTES_DISABLED": "admin", "SERVICE_ENDPOINT_OVERRIDES": f"jobs={canary.url}",
           "JOBS_SERVICE_URL": upstream.url}
    return gateway_factory(config(upstream), workers=2, env=env)


def test_a_disabled_route_answers_404_on_every_worker(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    with httpx.Client(timeout=5) as client:
        for i in range(12):
            r = client.get(f"{gw.url}/api/admin/users/{i}")
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "NOT_FOUND"
        assert client.get(f"{gw.url}/api/echo/ok").status_code == 200
    # The /api route beside it never served the admin paths.
    assert not any(path.startswith("/admin") or "/users/" in path for path in upstream.stats()["seen"])


def test_an_override_sends_the_service_to_its_canary(gw: Gateway, upstream: Upstream, canary: Upstream) -> None:
    upstream.reset()
    canary.reset()
    with httpx.Client(timeout=5) as client:
        for i in range(10):
            r = client.get(f"{gw.url}/jobs/echo/{i}")
            assert r.status_code == 200
    assert canary.stats()["total"] == 10
    assert upstream.stats()["total"] == 0  # the file's URL and JOBS_SERVICE_URL lost


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"ROUTES_DISABLED": "admn"}, "$ROUTES_DISABLED: routes: unknown route 'admn'"),
        ({"ROUTES_ENABLED": "api,jbs"}, "$ROUTES_ENABLED: routes: unknown route 'jbs'"),
        ({"SERVICE_ENDPOINT_OVERRIDES": "payments=http://127.0.0.1:9"},
         "$SERVICE_ENDPOINT_OVERRIDES: services: unknown service 'payments'"),
    ],
)
def test_an_unknown_name_stops_startup_naming_the_variable(
    upstream: Upstream, gateway_factory: GatewayFactory, env: dict[str, str], words: str
) -> None:
    gw = gateway_factory(config(upstream), workers=2, env=env, expect_failure=True, ready_timeout=60)
    assert gw.proc.returncode == 2
    assert f"configuration error: {words}" in gw.output()
