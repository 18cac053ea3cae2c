"""Forward auth in a 2-worker gateway with a real Redis and a real authorization service
that records its calls.

Allow, deny, timeout and error each behave as configured (and are counted); the headers
of an allowing answer reach the upstream and a client cannot send its own; answers are
reused for the same caller and request; 100 concurrent requests of one admin cause one
authorization call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import GatewayFactory
from tests.support.authz_server import AuthzServer
from tests.support.processes import Gateway, RedisServer, Upstream
from tests.support.prom import scrape, value

pytestmark = pytest.mark.integration

SECRET = "forward-auth-tests-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def authz() -> Iterator[AuthzServer]:
    server = AuthzServer(admins=("alice", "carol", "dave"))
    yield server
    server.stop()


def route(name: str, authz_url: str, **forward: Any) -> dict[str, Any]:
    auth = forward.pop("auth", {})
    return {"name": name, "path": f"/{name}", "service": "backend", "strip_prefix": True,
            "plugins": {"auth": auth, "forward_auth": {"url": authz_url, **forward}}}


@pytest.fixture(scope="module")
def gw(redis_server: RedisServer, upstream: Upstream, authz: AuthzServer, gateway_factory: GatewayFactory) -> Gateway:
    admins = authz.url("/admins")
    config = {
        "redis": {"url": redis_server.url},
        "services": {"backend": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {"auth": {"providers": {"hs": {"algorithms": ["HS256"], "secret": SECRET}}}},
        "routes": [
            route("admin", admins, headers=["x-tenant-id"], response_headers=["x-admin-id", "x-admin-roles"],
                  cache_ttl=30, timeout=2),
            route("admin-anyone", admins, auth={"mode": "optional"}, response_headers=["x-admin-id"], cache_ttl=0),
            {"name": "tenant-users", "path": "/tenants/{tenant}/users", "service": "backend",
             "upstream_prefix": "/echo",
             "plugins": {"auth": {}, "forward_auth": {"url": admins, "response_headers": ["x-admin-id"]}}},
            route("error-closed", authz.url("/error"), cache_ttl=0),
            route("error-open", authz.url("/error"), cache_ttl=0, failure="open"),
            route("slow-closed", authz.url("/slow"), cache_ttl=0, timeout=0.3),
            route("slow-open", authz.url("/slow"), cache_ttl=0, timeout=0.3, failure="open",
                  response_headers=["x-admin-id"]),
        ],
    }
    return gateway_factory(config, workers=2)


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "roles": ["staff"], "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def call(gw: Gateway, path: str, sub: str | None = "alice", method: str = "GET", **headers: str) -> httpx.Response:
    if sub is not None:
        headers["authorization"] = f"Bearer {token(sub)}"
    return httpx.request(method, f"{gw.url}{path}", headers=headers, timeout=10)


def upstream_saw(r: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_an_allowed_admin_reaches_the_upstream_with_the_answers_headers(gw: Gateway, authz: AuthzServer) -> None:
    r = call(gw, "/admin/echo/tenants/t1/users/9", method="DELETE", **{"x-tenant-id": "t1", "x-admin-id": "mallory"})
    assert r.status_code == 200, r.text
    seen = upstream_saw(r)
    assert seen["x-admin-id"] == ["alice"]  # the client's own copy never passes
    assert seen["x-admin-roles"] == ["tenant-admin,auditor"]
    assert "x-not-kept" not in seen
    calls = authz.calls_to("/admins", lambda b: b.get("path") == "/admin/echo/tenants/t1/users/9")
    assert len(calls) == 1
    body = calls[0].body
    assert body["method"] == "DELETE" and body["route"] == "admin" and body["path_params"] == {}
    assert body["headers"] == {"x-tenant-id": "t1"}
    assert body["identity"]["subject"] == "alice" and body["identity"]["roles"] == ["staff"]
    assert body["identity"]["credential"] == "bearer"
    assert calls[0].headers["x-request-id"] == r.headers["x-request-id"]


def test_the_path_parameters_of_a_template_route_reach_the_service(gw: Gateway, authz: AuthzServer) -> None:
    r = call(gw, "/tenants/t42/users/9")
    assert r.status_code == 200, r.text
    (c,) = authz.calls_to("/admins", lambda b: b.get("path") == "/tenants/t42/users/9")
    assert c.body["path_params"] == {"tenant": "t42"} and c.body["route"] == "tenant-users"


def test_a_refused_caller_gets_the_uniform_body_and_never_reaches_the_upstream(
    gw: Gateway, authz: AuthzServer, upstream: Upstream
) -> None:
    upstream.reset()
    denied = call(gw, "/admin/echo/x", sub="bob")
    assert denied.status_code == 403
    assert denied.json()["error"] == {"code": "FORBIDDEN", "message": "the authorization service refused this request"}
    anonymous = call(gw, "/admin-anyone/echo/x", sub=None)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    assert upstream.stats()["total"] == 0


def test_answers_are_reused_for_the_same_caller_and_request(gw: Gateway, authz: AuthzServer) -> None:
    path = "/admin/echo/reused"
    for _ in range(10):  # both workers
        assert call(gw, path, sub="carol").status_code == 200
        assert call(gw, path, sub="bob").status_code == 403
    assert len(authz.calls_to("/admins", lambda b: b.get("path") == path)) == 2  # one per caller, fleet-wide
    assert call(gw, path + "/other", sub="carol").status_code == 200
    assert len(authz.calls_to("/admins", lambda b: b.get("path") == path + "/other")) == 1


@pytest.mark.parametrize(
    ("route_name", "status", "outcome"),
    [("error-closed", 503, "failed_closed"), ("error-open", 200, "failed_open"),
     ("slow-closed", 503, "failed_closed"), ("slow-open", 200, "failed_open")],
)
def test_timeouts_and_errors_fail_as_configured_and_are_counted(
    gw: Gateway, route_name: str, status: int, outcome: str
) -> None:
    before = value(scrape(gw.url), "gatehouse_forward_auth_decisions_total", route=route_name, outcome=outcome)
    r = call(gw, f"/{route_name}/echo/x")
    assert r.status_code == status, r.text
    if status == 503:
        assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    else:
        assert "x-admin-id" not in upstream_saw(r)  # nothing from an answer that never came
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = value(scrape(gw.url), "gatehouse_forward_auth_decisions_total", route=route_name, outcome=outcome)
        if after - before >= 1:
            break
        time.sleep(0.2)
    assert after - before >= 1


def test_100_concurrent_requests_of_one_admin_cause_one_call(gw: Gateway, authz: AuthzServer) -> None:
    path = "/admin/echo/tenants/t7/settings"
    authz.delay = 0.5  # the answer comes late, so every request arrives while it is asked for
    try:
        async def burst() -> list[int]:
            headers = {"authorization": f"Bearer {token('dave')}"}
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(timeout=15, limits=limits) as client:
                rs = await asyncio.gather(*(client.get(f"{gw.url}{path}", headers=headers) for _ in range(100)))
            assert all(upstream_saw(r)["x-admin-id"] == ["dave"] for r in rs if r.status_code == 200)
            return [r.status_code for r in rs]

        assert asyncio.run(burst()) == [200] * 100
    finally:
        authz.delay = 0.0
    assert len(authz.calls_to("/admins", lambda b: b.get("path") == path)) == 1
