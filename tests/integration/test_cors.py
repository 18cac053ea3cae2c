"""CORS at the real gateway (2 workers): preflight answered locally, origins enforced,
headers on proxied responses, cache hits and gateway errors alike."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, Upstream

pytestmark = pytest.mark.integration

ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    cors: dict[str, Any] = {
        "origins": [ALLOWED, "https://*.tenant.example.com"],
        "methods": ["GET", "POST", "DELETE"],
        "headers": ["content-type", "x-api-key"],
        "expose_headers": ["x-request-id"],
        "credentials": True,
        "max_age": 120,
    }
    return gateway_factory({
        "services": {"backend": {"urls": [upstream.url]}},
        "routes": [
            {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True,
             "plugins": {"cors": cors, "cache": {"ttl": 30}}},
            {"name": "public", "path": "/pub", "service": "backend", "strip_prefix": True,
             "plugins": {"cors": {"origins": ["*"], "headers": ["*"]}}},
        ],
    }, workers=2)


def preflight(url: str, origin: str, method: str = "DELETE", headers: str | None = None) -> httpx.Response:
    h = {"origin": origin, "access-control-request-method": method}
    if headers:
        h["access-control-request-headers"] = headers
    return httpx.options(url, headers=h, timeout=10)


def test_preflight_is_answered_at_the_gateway(gw: Gateway, upstream: Upstream) -> None:
    before = upstream.stats()["seen"].get("/echo/pre", 0)
    r = preflight(f"{gw.url}/api/echo/pre", ALLOWED, headers="Content-Type, X-Api-Key")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "GET, POST, DELETE"
    assert r.headers["access-control-allow-headers"] == "content-type, x-api-key"
    assert r.headers["access-control-max-age"] == "120"
    assert "Origin" in r.headers["vary"]
    assert upstream.stats()["seen"].get("/echo/pre", 0) == before


def test_wildcard_subdomain_origin(gw: Gateway) -> None:
    origin = "https://eu.shop.tenant.example.com"
    assert preflight(f"{gw.url}/api/echo/w", origin).headers["access-control-allow-origin"] == origin
    bare = preflight(f"{gw.url}/api/echo/w", "https://tenant.example.com")
    assert "access-control-allow-origin" not in bare.headers


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example.net", "DELETE", None),
        ("https://app.example.com.evil.net", "GET", None),
        ("http://app.example.com", "GET", None),  # scheme is part of the origin
        (ALLOWED, "PATCH", None),
        (ALLOWED, "GET", "x-not-allowed"),
    ],
)
def test_refused_preflight_gets_no_cors_headers(gw: Gateway, origin: str, method: str, headers: str | None) -> None:
    r = preflight(f"{gw.url}/api/echo/r", origin, method, headers)
    assert r.status_code == 204
    assert not [k for k in r.headers if k.lower().startswith("access-control-")]


def test_actual_request_from_allowed_origin(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/echo/a", headers={"origin": ALLOWED}, timeout=10)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "x-request-id"
    assert "Origin" in r.headers.get_list("vary")


def test_disallowed_origin_gets_no_cors_headers_but_vary(gw: Gateway) -> None:
    for headers in ({"origin": "https://evil.example.net"}, {}):
        r = httpx.get(f"{gw.url}/api/echo/d", headers=headers, timeout=10)
        assert r.status_code == 200
        assert not [k for k in r.headers if k.lower().startswith("access-control-")]
        assert "Origin" in r.headers.get_list("vary")


def test_cache_hits_carry_the_callers_cors_headers(gw: Gateway) -> None:
    url = f"{gw.url}/api/cache/cors"
    # One kept-alive connection stays on one worker (this gateway caches in process memory).
    with httpx.Client(timeout=10) as c:
        first = c.get(url, headers={"origin": ALLOWED})
        assert first.headers["x-cache"] == "MISS"
        other = "https://b.tenant.example.com"
        hit = c.get(url, headers={"origin": other})
        assert hit.headers["x-cache"] == "HIT"
        assert hit.headers.get_list("access-control-allow-origin") == [other]
        foreign = c.get(url, headers={"origin": "https://evil.example.net"})
        assert foreign.headers["x-cache"] == "HIT"
        assert "access-control-allow-origin" not in foreign.headers


def test_gateway_errors_carry_cors_headers(gw: Gateway, upstream: Upstream) -> None:
    r = httpx.get(f"{gw.url}/api/status/502", headers={"origin": ALLOWED}, timeout=10)
    assert r.status_code == 502
    assert r.headers["access-control-allow-origin"] == ALLOWED


def test_any_origin_without_credentials(gw: Gateway) -> None:
    r = preflight(f"{gw.url}/pub/echo/p", "https://whoever.example.org", "GET", "X-Custom, X-Other")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-headers"] == "x-custom, x-other"
    assert "access-control-allow-credentials" not in r.headers
    get = httpx.get(f"{gw.url}/pub/echo/p", headers={"origin": "https://whoever.example.org"}, timeout=10)
    assert get.headers["access-control-allow-origin"] == "*"
    assert "Origin" not in get.headers.get_list("vary")
