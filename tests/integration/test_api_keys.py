"""API keys and service tokens in a 2-worker gateway with a real Redis.

A valid key passes with its identity headers and its tier's limits apply (the keys of one
client share them); a wrong, expired or revoked key gets 401; keys created through the
admin API work at once and stop working after revocation; concurrent requests with a key
only Redis knows cost one lookup per worker; the key never reaches the upstream or the
access log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from plugins.auth.api_key_config import digest_text
from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, RedisServer, Upstream, free_port

pytestmark = pytest.mark.integration

TOKEN = "adm1n-t0ken-for-the-api-key-tests-42"
WORKER_KEY = "svc_media_worker_5e1d9c3b7a0f4e2d8c6b"
WORKER_NEXT = "svc_media_worker_next_a4c2e0f8d6b1"  # the same client's next key (a rotation)
TINY_A = "svc_tiny_client_one_9e8d7c6b5a4f3e2d"
TINY_B = "svc_tiny_client_two_1a2b3c4d5e6f7a8b"
TINY_OTHER = "svc_tiny_other_client_77a8b9c0d1e2f3a4"
EXPIRED_KEY = "svc_expired_key_0f1e2d3c4b5a69788"
HEADER = "x-service-token"
TINY_LIMIT = 3


def key(key_id: str, value: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {"id": key_id, "hash": digest_text(value.encode()), "subject": subject, **extra}


class Setup:
    def __init__(self, gw: Gateway, admin_port: int, log: Path) -> None:
        self.gw = gw
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}",
                                  headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        self.log = log

    def call(self, path: str, value: str | None, **headers: str) -> httpx.Response:
        hdrs = dict(headers)
        if value is not None:
            hdrs[HEADER] = value
        return httpx.post(f"{self.gw.url}{path}", headers=hdrs, content=b"{}", timeout=10)


@pytest.fixture(scope="module")
def setup(redis_server: RedisServer, upstream: Upstream, gateway_factory: GatewayFactory,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    admin_port = free_port()
    log = tmp_path_factory.mktemp("api-keys") / "access.log"
    past = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    config: dict[str, Any] = {
        "redis": {"url": redis_server.url, "command_timeout": 1.0},
        "services": {"media": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {
            "auth": {"key_sets": {"callbacks": {
                "header": HEADER,
                "default_tier": "internal",
                "redis": True,
                "cache_ttl": 1.0,
                "keys": [
                    key("media-2025b", WORKER_KEY, "media-worker", scopes=["media:callback"], roles=["service"]),
                    key("media-2025c", WORKER_NEXT, "media-worker", scopes=["media:callback"]),
                    key("tiny-a", TINY_A, "tiny-client", tier="tiny", scopes=["media:callback"]),
                    key("tiny-b", TINY_B, "tiny-client", tier="tiny", scopes=["media:callback"]),
                    key("tiny-other", TINY_OTHER, "tiny-other", tier="tiny", scopes=["media:callback"]),
                    key("old", EXPIRED_KEY, "media-worker", scopes=["media:callback"], expires_at=past),
                ],
            }}},
            "rate_limit": {"policies": {"per-key": {
                "key": "api_key",
                "anonymous_tier": "internal",
                "default_tier": "internal",
                "tiers": {"internal": {"per_minute": 10_000},
                          "tiny": {"limits": [{"algorithm": "sliding_window", "limit": TINY_LIMIT, "window": 600}]}},
            }}},
        },
        "routes": [
            {"name": "callbacks", "path": "/callbacks", "service": "media", "strip_prefix": True,
             "plugins": {"auth": {"credentials": ["api_key"], "scopes": ["media:callback"]},
                         "rate_limit": {"policy": "per-key"}}},
            {"name": "open", "path": "/open", "service": "media", "strip_prefix": True},
        ],
        "observability": {"access_log": {"output": str(log), "flush_interval": 0.05}},
        "admin": {"port": admin_port},
    }
    gw = gateway_factory(config, workers=2, env={"GATEHOUSE_ADMIN_TOKEN": TOKEN})
    s = Setup(gw, admin_port, log)
    yield s
    s.admin.close()


def seen_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.json()["headers"]}


def test_a_valid_key_passes_with_its_identity_and_never_reaches_the_upstream(setup: Setup) -> None:
    for value in (WORKER_KEY, WORKER_NEXT) * 3:  # both keys of the client, on both workers
        r = setup.call("/callbacks/echo/done", value)
        assert r.status_code == 200, r.text
        headers = seen_headers(r)
        assert headers["x-user-id"] == "media-worker"
        assert headers["x-user-tier"] == "internal"
        assert headers["x-user-scopes"] == "media:callback"
        assert HEADER not in headers
        assert value not in r.text
    # Not on a route without the auth plugin either: the header is the gateway's.
    r = setup.call("/open/echo/x", WORKER_KEY)
    assert r.status_code == 200 and HEADER not in seen_headers(r) and WORKER_KEY not in r.text


def test_wrong_and_expired_keys_get_401(setup: Setup) -> None:
    for value, reason in ((WORKER_KEY[:-1] + "0", "not valid"), (WORKER_KEY.upper(), "not valid"),
                          (EXPIRED_KEY, "expired"), ("two words", "malformed"), ("x" * 300, "malformed")):
        r = setup.call("/callbacks/echo/x", value)
        assert r.status_code == 401, value
        assert r.json()["error"]["code"] == "AUTH_FAILED" and reason in r.json()["error"]["message"]
        assert r.headers["www-authenticate"].startswith("ApiKey ")
    missing = setup.call("/callbacks/echo/x", None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "UNAUTHORIZED"


def test_the_tier_limits_apply_and_a_clients_keys_share_them(setup: Setup) -> None:
    statuses = [setup.call("/callbacks/echo/t", value).status_code for value in (TINY_A, TINY_B, TINY_A)]
    assert statuses == [200] * TINY_LIMIT
    refused = setup.call("/callbacks/echo/t", TINY_B)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMITED"
    # Other clients, of the same tier and from the same address, or of another tier, are
    # counted apart: the key is the verified subject, not the address or the string sent.
    assert setup.call("/callbacks/echo/t", TINY_OTHER).status_code == 200
    assert setup.call("/callbacks/echo/t", WORKER_KEY).status_code == 200


def test_keys_made_through_the_admin_api_work_until_revoked(setup: Setup) -> None:
    made = setup.admin.post("/auth/key-sets/callbacks/keys",
                            json={"subject": "partner-7", "id": "partner-7a", "scopes": ["media:callback"],
                                  "ttl": 3600})
    assert made.status_code == 201, made.text
    value = made.json()["key"]
    assert made.json()["id"] == "partner-7a" and made.json()["source"] == "redis"
    r = setup.call("/callbacks/echo/p", value)
    assert r.status_code == 200 and seen_headers(r)["x-user-id"] == "partner-7"
    listed = setup.admin.get("/auth/key-sets/callbacks/keys").json()["keys"]
    assert {"partner-7a", "media-2025b"} <= {row["id"] for row in listed}
    assert value not in setup.admin.get("/auth/key-sets/callbacks/keys").text
    again = setup.admin.post("/auth/key-sets/callbacks/keys", json={"subject": "x", "id": "partner-7a"})
    assert again.status_code == 409

    assert setup.admin.delete("/auth/key-sets/callbacks/keys/partner-7a").json() == {"revoked": True}
    deadline = time.monotonic() + 15
    while True:  # the other worker forgets it within the set's cache_ttl
        statuses = {setup.call("/callbacks/echo/p", value).status_code for _ in range(6)}
        if statuses == {401} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert statuses == {401}
    assert setup.admin.delete("/auth/key-sets/callbacks/keys/partner-7a").status_code == 404


def test_an_imported_key_and_expiry_through_the_admin_api(setup: Setup) -> None:
    value = "partner_imported_key_3c5e7a9b1d2f4a6c"
    soon = datetime.fromtimestamp(time.time() + 3, UTC).isoformat()
    made = setup.admin.post("/auth/key-sets/callbacks/keys",
                            json={"subject": "partner-8", "hash": digest_text(value.encode()),
                                  "scopes": ["media:callback"], "expires_at": soon})
    assert made.status_code == 201 and "key" not in made.json()
    assert setup.call("/callbacks/echo/i", value).status_code == 200
    deadline = time.monotonic() + 15
    while setup.call("/callbacks/echo/i", value).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
    expired = setup.call("/callbacks/echo/i", value)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_concurrent_requests_with_a_new_key_cost_one_lookup_per_worker(
    setup: Setup, redis_server: RedisServer
) -> None:
    made = setup.admin.post("/auth/key-sets/callbacks/keys",
                            json={"subject": "burst-client", "scopes": ["media:callback"]})
    value = made.json()["key"]

    def gets() -> int:
        stats = redis_server.cli("info", "commandstats")
        for line in stats.splitlines():
            if line.startswith("cmdstat_get:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    before = gets()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=60)) as client:
            rs = await asyncio.gather(*(client.post(f"{setup.gw.url}/callbacks/echo/b", headers={HEADER: value})
                                        for _ in range(60)))
        return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * 60
    assert 1 <= gets() - before <= 2  # at most one lookup per worker, then each worker's cache


def test_keys_never_reach_the_access_log(setup: Setup) -> None:
    rid = setup.call("/callbacks/echo/log", WORKER_KEY).headers["x-request-id"]
    setup.call("/callbacks/echo/log", WORKER_KEY[:-1] + "0")
    deadline = time.monotonic() + 10
    while rid not in (setup.log.read_text() if setup.log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    text = setup.log.read_text()
    assert rid in text
    for value in (WORKER_KEY, WORKER_NEXT, WORKER_KEY[:-1] + "0", TINY_A, TINY_B):
        assert value not in text
    line = next(orjson.loads(x) for x in text.splitlines() if rid in x)
    assert line["status"] == 200 and line["user"] is not None and line["user"] != "media-worker"
