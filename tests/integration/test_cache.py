"""The cache plugin against the real gateway (2 workers), a real redis-server and a real upstream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import REPO, Gateway, RedisCluster, RedisServer, Upstream

pytestmark = pytest.mark.integration


def cache_config(upstream: Upstream, redis_url: str, **cache: Any) -> dict[str, Any]:
    settings = {"ttl": 30, "local_ttl": 30, "coalesce_timeout": 5}
    settings.update(cache)
    return {
        "redis": {"url": redis_url, "command_timeout": 0.5},
        "plugins": {"cache": {"sync_interval": 0.1, "redis_timeout": 0.5}},
        "services": {"backend": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "routes": [
            {"name": "cached", "path": "/c", "service": "backend", "strip_prefix": True,
             "plugins": {"cache": settings}},
            {"name": "other", "path": "/o", "service": "backend", "strip_prefix": True,
             "plugins": {"cache": settings}},
            {"name": "cors-cached", "path": "/x", "service": "backend", "strip_prefix": True,
             "plugins": {"cache": settings, "cors": {"origins": ["https://app.example"], "credentials": True}}},
        ],
    }


@pytest.fixture(scope="module")
def gw(upstream: Upstream, redis_server: RedisServer, gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory(cache_config(upstream, redis_server.url), workers=2)


def seen(upstream: Upstream, path: str) -> int:
    return int(upstream.stats()["seen"].get(path, 0))


def fresh_get(url: str, **kw: Any) -> httpx.Response:
    """One request on a new connection, so successive calls spread over both workers."""
    with httpx.Client(timeout=10) as c:
        return c.get(url, **kw)


def test_miss_then_hit_across_workers(gw: Gateway, upstream: Upstream) -> None:
    first = fresh_get(f"{gw.url}/c/cache/basic")
    assert first.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    bodies = set()
    for _ in range(12):
        r = fresh_get(f"{gw.url}/c/cache/basic")
        assert r.status_code == 200
        assert r.headers["x-cache"] == "HIT"
        assert int(r.headers["age"]) >= 0
        assert r.headers["x-request-id"] != first.headers["x-request-id"]
        bodies.add(r.content)
    assert bodies == {first.content}
    assert seen(upstream, "/cache/basic") == 1


def test_a_response_for_one_host_never_serves_another(gw: Gateway, upstream: Upstream) -> None:
    # The upstream sees the client's Host as X-Forwarded-Host and may build redirects or
    # absolute URLs from it, so the host is part of the key (cache poisoning otherwise).
    url = f"{gw.url}/c/cache/by-host"
    assert fresh_get(url, headers={"host": "evil.example"}).headers["x-cache"] == "MISS"
    assert fresh_get(url, headers={"host": "shop.example"}).headers["x-cache"] == "MISS"
    assert fresh_get(url, headers={"host": "shop.example"}).headers["x-cache"] == "HIT"
    assert seen(upstream, "/cache/by-host") == 2


def test_cache_hits_follow_the_gateway_cors_policy_not_the_upstreams(gw: Gateway) -> None:
    url = f"{gw.url}/x/cache/cors?acao=*"
    for expected in ("MISS", "HIT"):
        evil = fresh_get(url, headers={"origin": "https://evil.example"})
        assert evil.headers["x-cache"] == expected
        assert "access-control-allow-origin" not in evil.headers
        assert "access-control-allow-credentials" not in evil.headers
    good = fresh_get(url, headers={"origin": "https://app.example"})
    assert good.headers["x-cache"] == "HIT"
    assert good.headers.get_list("access-control-allow-origin") == ["https://app.example"]


def test_head_is_answered_from_the_get_entry(gw: Gateway, upstream: Upstream) -> None:
    get = fresh_get(f"{gw.url}/c/cache/head")
    with httpx.Client(timeout=10) as c:
        head = c.head(f"{gw.url}/c/cache/head")
    assert head.status_code == 200
    assert head.headers["x-cache"] == "HIT"
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert seen(upstream, "/cache/head") == 1


def test_query_order_does_not_matter(gw: Gateway, upstream: Upstream) -> None:
    assert fresh_get(f"{gw.url}/c/cache/q?a=1&b=2").headers["x-cache"] == "MISS"
    assert fresh_get(f"{gw.url}/c/cache/q?b=2&a=1").headers["x-cache"] == "HIT"
    assert fresh_get(f"{gw.url}/c/cache/q?a=1&b=3").headers["x-cache"] == "MISS"


@pytest.mark.parametrize("cc", ["no-store", "private", "no-cache", "max-age=0"])
def test_upstream_cache_control_forbids_storing(gw: Gateway, upstream: Upstream, cc: str) -> None:
    path = f"/cache/cc-{cc.replace('=', '')}"
    for _ in range(3):
        r = fresh_get(f"{gw.url}/c{path}", params={"cc": cc})
        assert r.status_code == 200
        assert r.headers["x-cache"] == "MISS"
    assert seen(upstream, path) == 3


def test_max_age_shortens_the_ttl(gw: Gateway, upstream: Upstream) -> None:
    url = f"{gw.url}/c/cache/short"
    assert fresh_get(url, params={"cc": "max-age=1"}).headers["x-cache"] == "MISS"
    assert fresh_get(url, params={"cc": "max-age=1"}).headers["x-cache"] == "HIT"
    time.sleep(1.3)
    assert fresh_get(url, params={"cc": "max-age=1"}).headers["x-cache"] == "MISS"
    assert seen(upstream, "/cache/short") == 2


def test_vary_keys_on_the_named_request_headers(gw: Gateway, upstream: Upstream) -> None:
    url = f"{gw.url}/c/cache/vary"
    params = {"vary": "Accept-Language"}
    en = fresh_get(url, params=params, headers={"accept-language": "en"})
    assert en.headers["x-cache"] == "MISS"
    assert en.json()["lang"] == "en"
    fr = fresh_get(url, params=params, headers={"accept-language": "fr"})
    assert fr.headers["x-cache"] == "MISS"
    assert fr.json()["lang"] == "fr"
    for lang, original in (("en", en), ("fr", fr), ("en", en)):
        r = fresh_get(url, params=params, headers={"accept-language": lang})
        assert r.headers["x-cache"] == "HIT"
        assert r.json() == original.json()
    assert seen(upstream, "/cache/vary") == 2


@pytest.mark.parametrize("status", [404, 500, 503])
def test_errors_are_never_cached(gw: Gateway, upstream: Upstream, status: int) -> None:
    path = f"/cache/error-{status}"
    for _ in range(3):
        r = fresh_get(f"{gw.url}/c{path}", params={"status": str(status)})
        assert r.status_code == status
        assert r.headers["x-cache"] == "MISS"
    assert seen(upstream, path) == 3


def test_truncated_bodies_are_never_cached(gw: Gateway, upstream: Upstream) -> None:
    for _ in range(2):
        with pytest.raises(httpx.HTTPError):
            fresh_get(f"{gw.url}/c/truncated/t")
    assert seen(upstream, "/truncated/t") == 2


def test_non_get_methods_pass_through(gw: Gateway, upstream: Upstream) -> None:
    for _ in range(2):
        with httpx.Client(timeout=10) as c:
            r = c.post(f"{gw.url}/c/cache/post", content=b"x")
        assert r.status_code == 200
        assert "x-cache" not in r.headers
    assert seen(upstream, "/cache/post") == 2


def test_concurrent_misses_fetch_once_per_worker(gw: Gateway, upstream: Upstream) -> None:
    url = f"{gw.url}/c/slowcache/herd"

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=15, limits=limits) as client:
            return await asyncio.gather(*(client.get(url, params={"delay": "0.6"}) for _ in range(30)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    # One leader per worker went upstream; everyone else waited for it.
    assert 1 <= seen(upstream, "/slowcache/herd") <= 2
    kinds = [r.headers["x-cache"] for r in responses]
    assert kinds.count("MISS") <= 2
    assert len({r.content for r in responses}) <= 2


def _warm_both_workers(url: str) -> bytes:
    body = fresh_get(url).content
    for _ in range(10):
        r = fresh_get(url)
        assert r.headers["x-cache"] == "HIT"
    return body


# Runs in a process of its own: a third worker, in effect, doing what the admin API does.
_INVALIDATE = """
import asyncio, json, sys, warnings
warnings.simplefilter("ignore")
from controlplane.build import build_gateway
from controlplane.config.loader import load_config
from controlplane.build import new_runtime
from plugins.cache import invalidate

async def main():
    loaded = load_config(sys.argv[1])
    runtime = new_runtime(loaded)
    build_gateway(loaded, runtime)
    await runtime.start()
    try:
        result = await invalidate(runtime, **json.loads(sys.argv[2]))
        print(json.dumps({"shared": result.shared}))
    finally:
        await runtime.stop()

asyncio.run(main())
"""


def _run_invalidation(gw: Gateway, **kw: Any) -> None:
    """Invalidate through the public function, from a runtime built from the gateway's config."""
    out = subprocess.run(
        [sys.executable, "-c", _INVALIDATE, str(gw.config_path), json.dumps(kw)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"shared": True}


def _settle_and_check(url: str, stale: bytes, upstream: Upstream, path: str, before: int) -> None:
    time.sleep(0.6)  # several sync intervals (0.1 s): every worker has seen the record
    bodies = {fresh_get(url).content for _ in range(12)}
    assert stale not in bodies, "a worker served an invalidated entry"
    assert len(bodies) == 1
    assert seen(upstream, path) == before + 1


def test_invalidate_by_prefix_reaches_every_worker(gw: Gateway, upstream: Upstream) -> None:
    url_a, url_b = f"{gw.url}/c/cache/inv/a", f"{gw.url}/c/cache/keep/b"
    stale = _warm_both_workers(url_a)
    kept = _warm_both_workers(url_b)
    before = seen(upstream, "/cache/inv/a")
    _run_invalidation(gw, route="cached", prefix="/c/cache/inv")
    _settle_and_check(url_a, stale, upstream, "/cache/inv/a", before)
    # Outside the prefix nothing changed.
    for _ in range(4):
        r = fresh_get(url_b)
        assert r.headers["x-cache"] == "HIT"
        assert r.content == kept


def test_invalidate_by_route_reaches_every_worker(gw: Gateway, upstream: Upstream) -> None:
    url_c, url_o = f"{gw.url}/c/cache/route/x", f"{gw.url}/o/cache/route/x"
    stale = _warm_both_workers(url_c)
    other = _warm_both_workers(url_o)
    before = seen(upstream, "/cache/route/x")
    _run_invalidation(gw, route="cached")
    time.sleep(0.6)
    bodies = {fresh_get(url_c).content for _ in range(12)}
    assert stale not in bodies
    # Route 'other' shares the upstream path but not the route: untouched.
    assert {fresh_get(url_o).content for _ in range(4)} == {other}
    assert seen(upstream, "/cache/route/x") == before + 1


def test_redis_down_degrades_to_pass_through(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    redis = RedisServer()
    gw = gateway_factory(cache_config(upstream, redis.url, local_ttl=0), workers=2)
    assert fresh_get(f"{gw.url}/c/cache/down").headers["x-cache"] == "MISS"
    redis.kill()
    try:
        for _ in range(4):
            r = fresh_get(f"{gw.url}/c/cache/down2")
            assert r.status_code == 200
            assert r.headers["x-cache"] == "MISS"
        metrics = fresh_get(f"{gw.url}/metrics").text
        assert 'gatehouse_redis_errors_total{operation="cache_' in metrics
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(masters=3)
    yield c
    c.stop()


def test_cache_on_a_redis_cluster(cluster: RedisCluster, upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(cache_config(upstream, cluster.url, local_ttl=0), workers=2)
    paths = [f"/cache/cluster/{i}" for i in range(6)]  # spread over the three masters' slots
    for p in paths:
        assert fresh_get(f"{gw.url}/c{p}").headers["x-cache"] == "MISS"
    for p in paths:
        for _ in range(3):
            assert fresh_get(f"{gw.url}/c{p}").headers["x-cache"] == "HIT"
        assert seen(upstream, p) == 1
    stale = fresh_get(f"{gw.url}/c{paths[0]}").content
    _run_invalidation(gw, route="cached", prefix="/c/cache/cluster")
    time.sleep(0.6)
    assert fresh_get(f"{gw.url}/c{paths[0]}").content != stale
    assert seen(upstream, paths[0]) == 2
