"""The admin API on its own listener of a 2-worker gateway backed by a real Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, RedisServer, Upstream, free_port

pytestmark = pytest.mark.integration

TOKEN = "adm1n-t0ken-for-the-tests-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
COLLECTOR_SECRET = "collector-api-key-5e5e5e"
HASH_SECRET = "user-hash-key-7a7a7a"


class Admin:
    def __init__(self, gw: Gateway, port: int) -> None:
        self.gw = gw
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=10)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def admin(redis_server: RedisServer, upstream: Upstream, gateway_factory: GatewayFactory) -> Iterator[Admin]:
    port = free_port()
    cfg: dict[str, Any] = {
        "redis": {"url": redis_server.url},
        "services": {
            "backend": {
                "urls": [upstream.url],
                "timeouts": {"connect": 1, "read": 5, "total": 10},
                "breaker": {"consecutive_failures": 3, "failure_rate": None, "open_duration": 60},
            },
            "ghost": {"urls": [f"http://127.0.0.1:{free_port()}"], "timeouts": {"connect": 0.5, "read": 1, "total": 2}},
        },
        "plugins": {
            "auth": {"key_sets": {"managed": {"redis": True}}},
            "rate_limit": {
                "policies": {
                    "per-ip": {"key": "ip", "anonymous_tier": "std", "default_tier": "std",
                               "tiers": {"std": {"per_minute": 1000}}},
                },
            },
        },
        "routes": [
            {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True,
             "plugins": {"rate_limit": {"policy": "per-ip"}}},
            {"name": "cached", "path": "/cached", "service": "backend", "strip_prefix": True,
             "plugins": {"cache": {"ttl": 60}}},
            {"name": "ghost", "path": "/ghost", "service": "ghost"},
        ],
        "observability": {
            "access_log": {"enabled": False, "user_hash_key": HASH_SECRET},
            "tracing": {"enabled": False, "headers": {"x-api-key": COLLECTOR_SECRET}},
        },
        "admin": {"port": port},
        "audit": {"log": True, "flush_interval": 0.05},
    }
    gw = gateway_factory(cfg, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": TOKEN})
    a = Admin(gw, port)
    yield a
    a.client.close()


def _operations(admin: Admin) -> list[tuple[str, str]]:
    doc = admin.get("/openapi.json").json()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]


def test_openapi_document_lists_every_endpoint(admin: Admin) -> None:
    r = admin.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    ops = set(_operations(admin))
    for expected in [
        ("GET", "/config"), ("GET", "/services"), ("GET", "/breakers"), ("POST", "/breakers/{service}/reset"),
        ("POST", "/breakers/reset"), ("GET", "/ratelimits/{policy}/callers/{caller}"),
        ("DELETE", "/ratelimits/{policy}/callers/{caller}"), ("DELETE", "/ratelimits/{policy}"),
        ("GET", "/cache/stats"), ("POST", "/cache/invalidate"),
        ("GET", "/auth/key-sets"), ("GET", "/auth/key-sets/{key_set}/keys"),
        ("POST", "/auth/key-sets/{key_set}/keys"), ("DELETE", "/auth/key-sets/{key_set}/keys/{key_id}"),
    ]:
        assert expected in ops


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong-token-wrong-token-00"},
                                     {"authorization": TOKEN}, {"authorization": f"Basic {TOKEN}"}])
def test_every_endpoint_refuses_without_the_token(admin: Admin, headers: dict[str, str]) -> None:
    for method, path in _operations(admin):
        concrete = re.sub(r"\{[a-z_]+\}", "x", path)
        r = httpx.request(method, f"{admin.url}{concrete}", headers=headers, timeout=5)
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "UNAUTHORIZED"


def test_config_is_effective_and_redacted(admin: Admin) -> None:
    r = admin.get("/config")
    assert r.status_code == 200
    text = r.text
    for secret in (TOKEN, COLLECTOR_SECRET, HASH_SECRET):
        assert secret not in text
    cfg = r.json()["config"]
    assert cfg["observability"]["tracing"]["headers"] == {"x-api-key": "***"}
    assert cfg["observability"]["access_log"]["user_hash_key"] == "***"
    assert cfg["server"]["workers"] == 2  # defaults and overrides filled in
    assert cfg["routes"][0]["plugins"]["rate_limit"]["policy"] == "per-ip"


def test_services_report_instance_health_and_breaker(admin: Admin) -> None:
    data = admin.get("/services").json()
    by_name = {s["name"]: s for s in data["services"]}
    assert by_name["backend"]["instances"][0]["health"] == "up"
    assert by_name["ghost"]["instances"][0]["health"] == "down"
    assert by_name["backend"]["breaker"]["state"] == "closed"
    unchecked = admin.get("/services", params={"probe": "false"}).json()
    assert {i["health"] for s in unchecked["services"] for i in s["instances"]} == {"unchecked"}


def test_breakers_list_and_reset(admin: Admin, upstream: Upstream) -> None:
    upstream.control(mode="fail", status=500)
    try:
        deadline = time.monotonic() + 10
        while True:
            httpx.get(f"{admin.gw.url}/api/echo/x", timeout=5)
            states = {b["service"]: b["state"] for b in admin.get("/breakers").json()["breakers"]}
            if states.get("backend") == "open":
                break
            assert time.monotonic() < deadline, states
    finally:
        upstream.reset()
    assert httpx.get(f"{admin.gw.url}/api/echo/x", timeout=5).status_code == 503
    r = admin.post("/breakers/backend/reset")
    assert r.status_code == 200 and r.json()["state"] == "closed"
    # The reset is decided in Redis and reaches both workers.
    deadline = time.monotonic() + 5
    while httpx.get(f"{admin.gw.url}/api/echo/x", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
    assert all(httpx.get(f"{admin.gw.url}/api/echo/x", timeout=5).status_code == 200 for _ in range(10))
    assert admin.post("/breakers/reset").json()["reset"] >= 1
    assert admin.post("/breakers/nope/reset").status_code == 404


def test_rate_limit_usage_and_resets(admin: Admin) -> None:
    assert admin.delete("/ratelimits/per-ip/callers/127.0.0.1").status_code == 200
    for _ in range(5):
        assert httpx.get(f"{admin.gw.url}/api/echo/rl", timeout=5).status_code == 200
    usage = admin.get("/ratelimits/per-ip/callers/127.0.0.1").json()
    (limit,) = usage["limits"]
    assert limit["limit"] == 1000 and limit["remaining"] == 995  # counted across both workers
    r = admin.delete("/ratelimits/per-ip/callers/127.0.0.1")
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    assert admin.get("/ratelimits/per-ip/callers/127.0.0.1").json()["limits"][0]["remaining"] == 1000
    httpx.get(f"{admin.gw.url}/api/echo/rl", timeout=5)
    assert admin.delete("/ratelimits/per-ip").json()["deleted"] >= 1
    assert admin.get("/ratelimits/per-ip/callers/127.0.0.1").json()["limits"][0]["remaining"] == 1000
    assert admin.get("/ratelimits/nope/callers/x").status_code == 404
    assert admin.delete("/ratelimits/nope").status_code == 404
    assert [p["name"] for p in admin.get("/ratelimits").json()["policies"]] == ["per-ip"]


def test_cache_stats_and_invalidation(admin: Admin) -> None:
    for _ in range(3):
        assert httpx.get(f"{admin.gw.url}/cached/cache/item", timeout=5).status_code == 200
    # Lookups are counted in process and published every interval (0.5 s) by each worker.
    deadline = time.monotonic() + 5
    while True:
        stats = {s["route"]: s for s in admin.get("/cache/stats").json()["routes"]}
        if stats["cached"]["hit"] + stats["cached"]["miss"] >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["cached"]["hit"] + stats["cached"]["miss"] >= 3 and stats["cached"]["miss"] >= 1
    r = admin.post("/cache/invalidate", json={"route": "cached", "prefix": "/cached"})
    assert r.status_code == 200 and r.json()["prefix"] == "/cached"
    assert admin.post("/cache/invalidate", json={"route": "api"}).status_code == 404
    assert admin.post("/cache/invalidate", json={"prefix": "no-slash"}).status_code == 400
    assert admin.post("/cache/invalidate", content=b"{not json").status_code == 400


def test_cache_stats_are_counted_with_metrics_switched_off(
    redis_server: RedisServer, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    port = free_port()
    cfg: dict[str, Any] = {
        "redis": {"url": redis_server.url},
        "services": {"backend": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "routes": [{"name": "cached", "path": "/cached", "service": "backend", "strip_prefix": True,
                    "plugins": {"cache": {"ttl": 60}}}],
        "observability": {"metrics": {"enabled": False}, "access_log": {"enabled": False}},
        "admin": {"port": port},
    }
    gw = gateway_factory(cfg, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": TOKEN})
    a = Admin(gw, port)
    try:
        for _ in range(4):
            assert httpx.get(f"{gw.url}/cached/cache/off", timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while True:
            routes = a.get("/cache/stats").json()["routes"]
            looked_up = sum(r["hit"] + r["miss"] for r in routes if r["route"] == "cached")
            if looked_up >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert looked_up == 4
    finally:
        a.client.close()


def test_unknown_paths_and_methods(admin: Admin) -> None:
    r = admin.get("/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = admin.put("/config")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_schemathesis_against_the_openapi_document(admin: Admin) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_dict(admin.get("/openapi.json").json())

    @schema.auth()
    class BearerToken:
        """Lets schemathesis apply the token itself, and so also try requests without it."""

        def get(self, case: Any, context: Any) -> str:
            return TOKEN

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            case.call_and_validate(base_url=admin.url)

        try:
            check()
        except Exception as exc:  # collect every failing operation, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_admin_call_is_audited(admin: Admin) -> None:
    import orjson

    ok = admin.post("/breakers/reset").headers["x-request-id"]
    refused = httpx.get(f"{admin.url}/config", timeout=5).headers["x-request-id"]
    deadline = time.monotonic() + 10
    events: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not {ok, refused} <= set(events):
        for line in admin.gw.output().splitlines():
            if line.startswith("{") and '"audit"' in line:
                try:
                    event = orjson.loads(line).get("event") or {}
                except orjson.JSONDecodeError:
                    continue  # the last line may still be half written
                if event.get("request_id"):
                    events[event["request_id"]] = event
        time.sleep(0.1)
    assert events[ok]["type"] == "admin_action" and events[ok]["reason"] == "breakers.reset_all"
    assert events[ok]["details"]["status"] == 200
    assert events[refused]["type"] == "auth_failure"
    assert TOKEN not in admin.gw.output()
