"""Audit events from the real gateway (2 workers) to a real HTTP sink that records them.

Events arrive in batches with every field an investigator needs, keep arriving while the
sink is slow or down (and after it recovers), never slow a request, and are flushed when
the gateway shuts down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from hotpath.audit import hash_user
from tests.conftest import GatewayFactory
from tests.support.audit_sink import AuditSinkServer
from tests.support.processes import Gateway, Upstream

pytestmark = pytest.mark.integration

SECRET = "audit-integration-secret-audit-integration"
HASH_KEY = "audit-test-hash-key"
SINK_TOKEN = "sink-token-123"


@pytest.fixture(scope="module")
def sink() -> Iterator[AuditSinkServer]:
    srv = AuditSinkServer()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def healthy_sink(sink: AuditSinkServer) -> Iterator[None]:
    yield
    sink.status, sink.delay = 200, 0.0
    sink.resume()


def config(upstream_url: str, **audit: Any) -> dict[str, Any]:
    return {
        "services": {"backend": {"urls": [upstream_url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {"auth": {"providers": {"hs": {"algorithms": ["HS256"], "issuer": "https://idp.test"}}}},
        "routes": [{"name": "orders", "path": "/orders", "service": "backend", "strip_prefix": True,
                    "plugins": {"auth": {"scopes": ["orders:write"]}}}],
        "audit": {"batch_size": 4, "flush_interval": 0.3, "backoff_initial": 0.05, "backoff_max": 0.3,
                  "max_retries": 100, "timeout": 10, "user_hash_key": HASH_KEY, **audit},
    }


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory, sink: AuditSinkServer) -> Gateway:
    env = {"JWT_SECRET": SECRET, "AUDIT_EVENT_SINK_URL": sink.url, "AUDIT_EVENT_SINK_TOKEN": SINK_TOKEN}
    return gateway_factory(config(upstream.url), workers=2, env=env)


def token(**claims: Any) -> str:
    body = {"sub": "alice", "iss": "https://idp.test", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, SECRET, algorithm="HS256")


def bad_requests(gw: Gateway, n: int, tag: str, timeout: float = 10.0) -> dict[str, str]:
    """n requests with a forged token; returns request id -> correlation id."""
    ids: dict[str, str] = {}
    forged = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    for i in range(n):
        cid = f"{tag}-{i}"
        r = httpx.get(f"{gw.url}/orders/echo/x", timeout=timeout,
                      headers={"authorization": f"Bearer {forged}", "x-correlation-id": cid})
        assert r.status_code == 401
        ids[r.headers["x-request-id"]] = cid
    return ids


def events_for(sink: AuditSinkServer, ids: dict[str, str], timeout: float = 30.0) -> list[dict[str, Any]]:
    events = sink.wait_for(lambda evs: set(ids) <= {e["request_id"] for e in evs}, timeout)
    return [e for e in events if e["request_id"] in ids]


def test_auth_failures_arrive_in_batches_with_every_field(gw: Gateway, sink: AuditSinkServer) -> None:
    before = time.time()
    ids = bad_requests(gw, 12, "batch")
    events = events_for(sink, ids)
    assert len(events) == 12  # each exactly once
    for e in events:
        assert e["type"] == "auth_failure"
        assert e["reason"] == "bad_signature"
        assert e["correlation_id"] == ids[e["request_id"]]
        assert e["route"] == "orders"
        assert e["client_ip"] == "127.0.0.1"
        assert e["user"] is None  # an unverified subject is never reported
        assert before - 1 <= e["time"] <= time.time() + 1
        assert e["details"] == {"provider": "hs"}
    batches = [b for b in sink.batches if any(e["request_id"] in ids for e in b.events)]
    assert all(len(b.events) <= 4 for b in batches)
    assert any(len(b.events) > 1 for b in batches)  # batched, not one POST per event
    assert {b.authorization for b in batches} == {f"Bearer {SINK_TOKEN}"}


def test_missing_token_and_forbidden_are_audited_with_a_hashed_user(gw: Gateway, sink: AuditSinkServer) -> None:
    r = httpx.get(f"{gw.url}/orders/echo/x", timeout=10)
    assert r.status_code == 401
    missing_id = r.headers["x-request-id"]
    r = httpx.get(f"{gw.url}/orders/echo/x", headers={"authorization": f"Bearer {token(scope='orders:read')}"},
                  timeout=10)
    assert r.status_code == 403
    forbidden_id = r.headers["x-request-id"]
    events = {e["request_id"]: e for e in events_for(sink, {missing_id: "", forbidden_id: ""})}
    assert events[missing_id]["type"] == "auth_failure"
    assert events[missing_id]["reason"] == "missing_token"
    forbidden = events[forbidden_id]
    assert forbidden["type"] == "forbidden"
    assert forbidden["reason"] == "missing_scope"
    assert forbidden["user"] == hash_user("alice", HASH_KEY.encode())
    assert "alice" not in str(forbidden)


def test_a_slow_sink_never_slows_requests(gw: Gateway, sink: AuditSinkServer) -> None:
    sink.delay = 4.0
    # Each request must finish well inside the sink's delay: nothing waits for delivery.
    ids = bad_requests(gw, 10, "slow", timeout=2.0)
    sink.delay = 0.0
    assert len(events_for(sink, ids, timeout=45)) == 10


def test_events_survive_a_sink_that_is_down_and_recovers(gw: Gateway, sink: AuditSinkServer) -> None:
    sink.pause()
    ids = bad_requests(gw, 8, "down", timeout=5.0)
    sink.status = 503
    sink.resume()  # up but failing
    ids.update(bad_requests(gw, 4, "failing", timeout=5.0))
    time.sleep(0.5)
    assert not set(ids) & {e["request_id"] for e in sink.events()}
    sink.status = 200
    assert len(events_for(sink, ids)) == 12


def test_shutdown_flushes_queued_events_and_json_log(
    upstream: Upstream, gateway_factory: GatewayFactory, sink: AuditSinkServer
) -> None:
    env = {"JWT_SECRET": SECRET, "AUDIT_EVENT_SINK_URL": sink.url}
    gw = gateway_factory(config(upstream.url, batch_size=1000, flush_interval=60, log=True, shutdown_timeout=5),
                         workers=2, env=env)
    ids = bad_requests(gw, 5, "shutdown")
    time.sleep(0.5)
    assert not set(ids) & {e["request_id"] for e in sink.events()}  # held: batch not full, interval long
    gw.stop()
    assert len(events_for(sink, ids, timeout=5)) == 5
    log_lines = [ln for ln in gw.log_path.read_text(errors="replace").splitlines() if '"log":"audit"' in ln]
    assert {rid for rid in ids if any(rid in ln for ln in log_lines)} == set(ids)
