"""Rate limiting through the real gateway (2 Granian workers) and a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plugins.rate_limit.policy import caller_id
from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, RedisCluster, RedisServer, Upstream
from tests.support.prom import value

pytestmark = pytest.mark.integration

# The kill test holds requests to this; exactness tests use a generous timeout so that a
# loaded CI machine never pushes them into the (deliberately inexact) fallback.
COMMAND_TIMEOUT = 0.2
EXACT_TIMEOUT = 2.0


def window(limit: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"algorithm": "sliding_window", "limit": limit, "window": seconds, **extra}


def bucket(rate: int, period: float, burst: int) -> dict[str, Any]:
    return {"algorithm": "token_bucket", "rate": rate, "period": period, "burst": burst}


def policy(*limits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Keyed by the x-client header, so every test (and trial) uses fresh counters."""
    return {
        "key": "header",
        "header": "x-client",
        "default_tier": "anonymous",
        "tiers": {"anonymous": {"limits": list(limits)}},
        **extra,
    }


POLICIES: dict[str, Any] = {
    "exact": policy(window(50, 60)),
    "boundary": policy(window(3, 1.0, precision=10)),
    "slow": policy(bucket(1, 2.0, 1)),
    "combo": policy(window(10, 60, name="minute"), bucket(1, 60, 5) | {"name": "bucket"}),
    "short": policy(window(5, 1.0), bucket(1, 1.0, 2)),
    "big": policy(window(100_000, 60)),
    "open": policy(window(100_000, 60)),
    "closed": policy(window(100_000, 60), fail_open=False),
    "ietf": policy(window(20, 60, name="minute"), headers={"ietf": True}),
}


def route(name: str, **plugin: Any) -> dict[str, Any]:
    return {
        "name": name,
        "path": f"/{name}",
        "service": "backend",
        "strip_prefix": True,
        "upstream_prefix": "/echo",
        "plugins": {"rate_limit": {"policy": plugin.pop("policy", name), **plugin}},
    }


def config(upstream: Upstream, redis_url: str, timeout: float = EXACT_TIMEOUT) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url, "command_timeout": timeout},
        "services": {"backend": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {"rate_limit": {"policies": POLICIES, "batch": {"retry_interval": 0.3}}},
        "routes": [
            *(route(n) for n in POLICIES),
            route("combo3", policy="combo", cost=3),
            {"name": "free", "path": "/free", "service": "backend", "strip_prefix": True,
             "upstream_prefix": "/echo"},
        ],
    }


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, redis_server: RedisServer, gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory(config(upstream, redis_server.url), workers=2)


def client_id() -> str:
    return uuid.uuid4().hex


async def burst(url: str, n: int, headers: dict[str, str]) -> list[httpx.Response]:
    """n requests released at once, each on its own connection."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=20) as c:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await c.get(url, headers=headers)

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)


def test_200_simultaneous_requests_admit_exactly_50_in_each_of_10_trials(gateway: Gateway) -> None:
    for trial in range(10):
        responses = asyncio.run(burst(f"{gateway.url}/exact/x", 200, {"x-client": client_id()}))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 50, f"trial {trial}: {statuses.count(200)} admitted"
        assert statuses.count(429) == 150
        remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in responses if r.status_code == 200)
        assert remaining == list(range(50)), f"trial {trial}"
        for r in responses:
            assert r.headers["x-ratelimit-limit"] == "50"
            reset = int(r.headers["x-ratelimit-reset"])
            assert time.time() - 5 < reset <= time.time() + 61
        refused = [r for r in responses if r.status_code == 429]
        body = refused[0].json()
        assert body["error"]["code"] == "RATE_LIMITED"
        assert 1 <= body["error"]["retry_after"] <= 61  # a minute plus its sub-window
        assert refused[0].headers["retry-after"] == str(body["error"]["retry_after"])
        assert refused[0].headers["x-ratelimit-remaining"] == "0"


def test_sliding_window_boundary(gateway: Gateway) -> None:
    h = {"x-client": client_id()}
    with httpx.Client(base_url=gateway.url, headers=h, timeout=5) as c:
        assert [c.get("/boundary/a").status_code for _ in range(3)] == [200, 200, 200]
        refused = c.get("/boundary/a")
        # The first unit counts 1 s plus up to one 100 ms sub-window; Retry-After rounds up.
        assert refused.status_code == 429 and refused.headers["retry-after"] in ("1", "2")
        time.sleep(0.5)
        assert c.get("/boundary/a").status_code == 429  # still inside the sliding window
        time.sleep(0.7)
        again = c.get("/boundary/a")
        assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "2"


def test_token_bucket_refills_below_one_per_second(gateway: Gateway) -> None:
    h = {"x-client": client_id()}
    with httpx.Client(base_url=gateway.url, headers=h, timeout=5) as c:
        assert c.get("/slow/a").status_code == 200
        refused = c.get("/slow/a")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        time.sleep(1.0)
        assert c.get("/slow/a").status_code == 429
        time.sleep(1.1)
        assert c.get("/slow/a").status_code == 200


def test_all_limits_are_consumed_all_or_nothing(gateway: Gateway, redis_server: RedisServer) -> None:
    cid = client_id()
    with httpx.Client(base_url=gateway.url, headers={"x-client": cid}, timeout=5) as c:
        ok = c.get("/combo3/a")  # cost 3 from both: window 7 left, bucket 2 left
        assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining"] == "2"
        refused = c.get("/combo3/a")  # the bucket cannot give 3: nothing is taken anywhere
        assert refused.status_code == 429
        one = c.get("/combo/a")  # cost 1: bucket 1 left, window 10 - 3 - 1 = 6
        assert one.status_code == 200 and one.headers["x-ratelimit-remaining"] == "1"
    tag = f"gh:v1:rl:{{combo:{caller_id('header', cid)}}}"
    assert redis_server.cli("hget", f"{tag}:w1000000x61", "t") == "4"


def test_ietf_headers(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.url}/ietf/a", headers={"x-client": client_id()})
    assert r.status_code == 200
    assert r.headers["ratelimit-policy"] == '"minute";q=20;w=60'
    assert r.headers["ratelimit"].startswith('"minute";r=19;t=')
    assert "x-ratelimit-limit" in r.headers


def test_unlimited_route_has_no_headers(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.url}/free/a")
    assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers


def test_every_key_has_a_ttl_and_none_is_left_after_idle(gateway: Gateway, redis_server: RedisServer) -> None:
    cid = client_id()
    with httpx.Client(base_url=gateway.url, headers={"x-client": cid}, timeout=5) as c:
        for _ in range(8):
            c.get("/short/a")
    tag = f"gh:v1:rl:{{short:{caller_id('header', cid)}}}"
    keys = redis_server.cli("--scan", "--pattern", "gh:v1:rl:{short:*").split()
    assert sorted(keys) == sorted([f"{tag}:w20000x51", f"{tag}:b1000000r1"])
    # No key outlives its window (1 s, plus its 20 ms sub-window) or its bucket (2 s: burst 2
    # at 1/s).
    assert 0 < int(redis_server.cli("pttl", f"{tag}:w20000x51")) <= 1020
    assert 0 < int(redis_server.cli("pttl", f"{tag}:b1000000r1")) <= 2000
    every = redis_server.cli("--scan", "--pattern", "gh:v1:rl:*").split()
    assert every and all(int(redis_server.cli("pttl", k)) > 0 for k in every)
    time.sleep(2.2)
    assert redis_server.cli("--scan", "--pattern", "gh:v1:rl:{short:*") == ""


def _load(url: str, headers: dict[str, str], stop: threading.Event, out: list[tuple[int, float]]) -> None:
    with httpx.Client(timeout=5, headers=headers) as c:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status = c.get(url).status_code
            except httpx.HTTPError:
                status = -1
            out.append((status, time.monotonic() - t0))


@pytest.fixture
def loaders() -> Iterator[Any]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(url: str, headers: dict[str, str], n: int = 4) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for _ in range(n):
            t = threading.Thread(target=_load, args=(url, headers, stop, out), daemon=True)
            t.start()
            threads.append(t)
        return out

    yield start
    stop.set()
    for t in threads:
        t.join(10)


def test_script_flush_under_load_is_recovered(gateway: Gateway, redis_server: RedisServer, loaders: Any) -> None:
    cid = client_id()
    results = loaders(f"{gateway.url}/big/a", {"x-client": cid})
    deadline = time.monotonic() + 1.5
    flushes = 0
    while time.monotonic() < deadline:
        redis_server.cli("script", "flush")
        flushes += 1
        time.sleep(0.1)
    time.sleep(0.2)
    snapshot = list(results)
    assert flushes >= 5 and len(snapshot) > 50
    assert {s for s, _ in snapshot} == {200}
    # Every admitted request was counted in Redis: none went to the fallback. Outcomes are
    # published by each worker every publish interval (0.5 s): wait one out first.
    time.sleep(0.7)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert value(metrics, "gatehouse_rate_limit_decisions_total", policy="big", outcome="fail_open") == 0
    assert value(metrics, "gatehouse_rate_limit_decisions_total", policy="big", outcome="allowed") >= len(snapshot)


@pytest.fixture
def doomed_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def test_redis_killed_under_load(
    upstream: Upstream, doomed_redis: RedisServer, gateway_factory: GatewayFactory, loaders: Any
) -> None:
    gw = gateway_factory(config(upstream, doomed_redis.url, COMMAND_TIMEOUT), workers=2)
    open_results = loaders(f"{gw.url}/open/a", {"x-client": client_id()}, 3)
    closed_results = loaders(f"{gw.url}/closed/a", {"x-client": client_id()}, 3)
    time.sleep(0.5)
    assert {s for s, _ in open_results} == {200} and {s for s, _ in closed_results} == {200}
    before_open, before_closed = len(open_results), len(closed_results)
    doomed_redis.kill()
    time.sleep(1.5)
    after_open = open_results[before_open:]
    after_closed = closed_results[before_closed:]
    # Fail-open: no error burst at all, and no request held up by the dead Redis.
    assert len(after_open) > 20
    assert {s for s, _ in after_open} == {200}
    assert max(d for _, d in after_open) < 2.0
    # Fail-closed: 503 SERVICE_UNAVAILABLE, each within the timeout (plus a loaded-machine margin).
    assert len(after_closed) > 20
    assert {s for s, _ in after_closed[5:]} == {503}
    assert max(d for s, d in after_closed if s == 503) < COMMAND_TIMEOUT + 1.0
    r = httpx.get(f"{gw.url}/closed/a", headers={"x-client": "x"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    time.sleep(0.7)  # one publish interval of the other worker
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert value(metrics, "gatehouse_rate_limit_decisions_total", policy="open", outcome="fail_open") > 0
    # Redis comes back on the same port: decisions are shared again.
    doomed_redis.start()
    time.sleep(1.0)
    cid = client_id()
    for _ in range(3):
        assert httpx.get(f"{gw.url}/closed/a", headers={"x-client": cid}).status_code == 200
    assert doomed_redis.cli("--scan", "--pattern", "gh:v1:rl:{closed:*") != ""


def test_without_redis_several_workers_refuse_to_start(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    cfg = config(upstream, "")
    del cfg["redis"]
    gw = gateway_factory(cfg, workers=2, expect_failure=True, ready_timeout=30)
    assert gw.proc.returncode == 2
    assert "rate_limit" in gw.output() and "workers" in gw.output()


def test_without_redis_one_worker_is_exact(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    cfg = config(upstream, "")
    del cfg["redis"]
    gw = gateway_factory(cfg, workers=1)
    responses = asyncio.run(burst(f"{gw.url}/exact/x", 80, {"x-client": client_id()}))
    assert [r.status_code for r in responses].count(200) == 50


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster(3)
    yield c
    c.stop()


def test_exact_on_a_three_master_cluster(cluster: RedisCluster, upstream: Upstream,
                                         gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(config(upstream, cluster.url), workers=2)
    # Several callers, so their decisions land in different slots on different masters.
    clients = [client_id() for _ in range(6)]

    async def all_bursts() -> list[list[httpx.Response]]:
        return list(await asyncio.gather(*(burst(f"{gw.url}/exact/x", 70, {"x-client": c}) for c in clients)))

    for responses in asyncio.run(all_bursts()):
        admitted = [r for r in responses if r.status_code == 200]
        assert len(admitted) == 50
        assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in admitted) == list(range(50))
    masters_with_keys = sum(
        1 for node in cluster.nodes if node.cli("--scan", "--pattern", "gh:v1:rl:*") != ""
    )
    assert masters_with_keys >= 2


JWT_SECRET = "rate-limit-test-secret-0123456789abcdef"


def test_tier_comes_from_the_jwt_claim(upstream: Upstream, redis_server: RedisServer,
                                       gateway_factory: GatewayFactory) -> None:
    import jwt

    cfg = config(upstream, redis_server.url)
    cfg["plugins"]["auth"] = {"providers": {"local": {"algorithms": ["HS256"], "secret": JWT_SECRET}}}
    cfg["plugins"]["rate_limit"]["policies"] = {
        "tiered": {
            "key": "user",
            "tiers": {
                "anonymous": {"limits": [window(2, 60)]},
                "free": {"limits": [window(3, 60)]},
                "pro": {"limits": [window(5, 60)]},
            },
        }
    }
    cfg["routes"] = [{
        "name": "tiered", "path": "/tiered", "service": "backend", "strip_prefix": True, "upstream_prefix": "/echo",
        "plugins": {"auth": {"mode": "optional"}, "rate_limit": {"policy": "tiered"}},
    }]
    gw = gateway_factory(cfg, workers=2)

    def token(sub: str, **claims: Any) -> dict[str, str]:
        payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
        return {"authorization": f"Bearer {jwt.encode(payload, JWT_SECRET, algorithm='HS256')}"}

    def admitted(headers: dict[str, str]) -> tuple[int, str]:
        with httpx.Client(base_url=gw.url, headers=headers, timeout=5) as c:
            rs = [c.get("/tiered/a") for _ in range(7)]
        return [r.status_code for r in rs].count(200), rs[0].headers["x-ratelimit-limit"]

    assert admitted(token(client_id(), tier="pro")) == (5, "5")
    assert admitted(token(client_id())) == (3, "3")  # no tier claim: the default tier
    assert admitted(token(client_id(), tier="platinum")) == (3, "3")  # unknown tier: default
    assert admitted({}) == (2, "2")  # anonymous, keyed by client IP
    # The counter belongs to the subject: a second token for the same user shares it.
    alice = client_id()
    assert admitted(token(alice, tier="pro"))[0] == 5
    assert admitted(token(alice, tier="pro", jti="another"))[0] == 0
