"""API keys of the configuration: verification by digest, expiry, identity, and the auth
plugin on routes that take keys (alone or beside bearer tokens). Keys kept in Redis are
tested against a real redis-server in tests/integration/test_api_keys.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import jwt
import msgspec
import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.loader import load_config_text
from hotpath.responses import LocalResponse
from plugins.auth import AuthPlugin
from plugins.auth.api_key_config import KeySetConfig, digest_text, well_formed
from plugins.auth.api_keys import EXPIRED, MALFORMED, UNKNOWN, KeyRefused, KeySet
from plugins.auth.verifier import Verified
from tests.support.requests import make_ctx
from tests.unit.plugins.auth.conftest import NOW, SECRET, FakeClock

WORKER_KEY = "wk_3f9a1c0e5b7d2a8c4e6f1b3d5a7c9e0f"
OLD_KEY = "wk_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
TENANT_KEY = "tk_9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"


def key_set(clock: FakeClock) -> KeySet:
    config = msgspec.convert({
        "header": "x-service-token",
        "default_tier": "internal",
        "keys": [
            {"id": "media-2025b", "hash": digest_text(WORKER_KEY.encode()), "subject": "media-worker",
             "scopes": ["media:callback"], "roles": ["service"]},
            {"id": "media-2025a", "hash": digest_text(OLD_KEY.encode()), "subject": "media-worker",
             "expires_at": datetime.fromtimestamp(NOW + 60, UTC)},
            {"id": "tenant-1", "hash": digest_text(TENANT_KEY.encode()), "subject": "tenant-1", "tier": "pro"},
        ],
    }, KeySetConfig)
    return KeySet("callbacks", config, None, clock=clock)


def test_the_digest_is_the_sha256_of_the_key() -> None:
    assert digest_text(b"test") == "sha256:" + hashlib.sha256(b"test").hexdigest()
    assert well_formed(b"k" * 16, 256) and not well_formed(b"", 256) and not well_formed(b"k" * 257, 256)
    assert not well_formed(b"with space", 256) and not well_formed(b"caf\xc3\xa9", 256)


def test_a_key_yields_its_identity_and_the_upstream_headers(clock: FakeClock) -> None:
    keys = key_set(clock)
    found = keys.check(WORKER_KEY.encode())
    assert isinstance(found, Verified)
    identity = found.identity
    assert (identity.subject, identity.tier, identity.credential) == ("media-worker", "internal", "api_key")
    assert identity.scopes == frozenset({"media:callback"}) and identity.roles == frozenset({"service"})
    assert identity.claims == {"key_id": "media-2025b", "key_set": "callbacks"}
    assert found.headers == [(b"x-user-id", b"media-worker"), (b"x-user-tier", b"internal"),
                             (b"x-user-roles", b"service"), (b"x-user-scopes", b"media:callback")]
    tenant = keys.check(TENANT_KEY.encode())
    assert isinstance(tenant, Verified) and tenant.identity.tier == "pro"


def test_rotation_expiry_and_refusals(clock: FakeClock) -> None:
    keys = key_set(clock)
    # Two keys of one client during a rotation: the same subject either way.
    old = keys.check(OLD_KEY.encode())
    assert isinstance(old, Verified) and old.identity.subject == "media-worker"
    clock.now = NOW + 60
    with pytest.raises(KeyRefused) as expired:
        keys.check(OLD_KEY.encode())
    assert expired.value.reason == EXPIRED
    assert isinstance(keys.check(WORKER_KEY.encode()), Verified)
    for wrong in (WORKER_KEY[:-1] + "1", WORKER_KEY.upper(), "x" * 40):
        with pytest.raises(KeyRefused) as refused:
            keys.check(wrong.encode())
        assert refused.value.reason == UNKNOWN
    for malformed in (b"", b"x" * 300, b"bad key", b"\x00" * 20):
        with pytest.raises(KeyRefused) as bad:
            keys.check(malformed)
        assert bad.value.reason == MALFORMED


CONFIG = f"""
services: {{b: {{urls: ["http://127.0.0.1:9"]}}}}
plugins:
  auth:
    providers:
      hs: {{algorithms: [HS256], secret: "{SECRET}"}}
    key_sets:
      callbacks:
        header: x-service-token
        keys:
          - {{id: k1, hash: "{digest_text(WORKER_KEY.encode())}", subject: media-worker, scopes: [media:callback]}}
          - {{id: k2, hash: "{digest_text(TENANT_KEY.encode())}", subject: tenant-1}}
routes:
  - {{name: keys, path: /keys, service: b,
     plugins: {{auth: {{credentials: [api_key], scopes: [media:callback]}}}}}}
  - {{name: either, path: /either, service: b, plugins: {{auth: {{credentials: [bearer, api_key]}}}}}}
  - {{name: maybe, path: /maybe, service: b, plugins: {{auth: {{credentials: [api_key], mode: optional}}}}}}
  - {{name: jwt, path: /jwt, service: b, plugins: {{auth: {{}}}}}}
"""


def plugins() -> dict[str, AuthPlugin]:
    loaded = load_config_text(CONFIG, "inline.yaml", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    out = {}
    for route in gateway.table.routes:
        plugin = route.chain.plugins[0]
        assert isinstance(plugin, AuthPlugin)
        out[route.name] = plugin
    return out


def token(sub: str = "alice") -> bytes:
    return b"Bearer " + jwt.encode({"sub": sub, "exp": NOW * 2}, SECRET, algorithm="HS256").encode()


async def test_routes_that_take_keys() -> None:
    p = plugins()
    ok = make_ctx(headers=[(b"x-service-token", WORKER_KEY.encode())])
    assert await p["keys"].on_request(ok) is None
    assert ok.identity is not None and ok.identity.subject == "media-worker"
    assert (b"x-user-id", b"media-worker") in ok.upstream_headers

    lacking = await p["keys"].on_request(make_ctx(headers=[(b"x-service-token", TENANT_KEY.encode())]))
    assert isinstance(lacking, LocalResponse) and lacking.status == 403
    assert lacking.refusal is not None and lacking.refusal.reason == "missing_scope"

    missing = await p["keys"].on_request(make_ctx())
    assert isinstance(missing, LocalResponse) and missing.status == 401
    assert dict(missing.headers)[b"www-authenticate"] == b'ApiKey realm="gatehouse", header="x-service-token"'
    assert b"UNAUTHORIZED" in missing.body
    assert missing.refusal is not None and missing.refusal.reason == "missing_key"
    assert missing.refusal.details == {"key_set": "callbacks"}

    wrong = await p["keys"].on_request(make_ctx(headers=[(b"x-service-token", b"wk_" + b"0" * 32)]))
    assert isinstance(wrong, LocalResponse) and wrong.status == 401 and b"AUTH_FAILED" in wrong.body
    assert wrong.refusal is not None and wrong.refusal.reason == "unknown_key"
    assert WORKER_KEY.encode() not in wrong.body

    twice = make_ctx(headers=[(b"x-service-token", WORKER_KEY.encode()), (b"x-service-token", TENANT_KEY.encode())])
    refused = await p["keys"].on_request(twice)
    assert isinstance(refused, LocalResponse) and refused.refusal is not None
    assert refused.refusal.reason == "malformed_key"
    # A bearer token is not an API key on a route that takes keys only.
    bearer_only = await p["keys"].on_request(make_ctx(headers=[(b"authorization", token())]))
    assert isinstance(bearer_only, LocalResponse) and bearer_only.status == 401


async def test_a_route_that_takes_either() -> None:
    p = plugins()["either"]
    by_key = make_ctx(headers=[(b"x-service-token", TENANT_KEY.encode())])
    assert await p.on_request(by_key) is None
    assert by_key.identity is not None and by_key.identity.credential == "api_key"
    by_token = make_ctx(headers=[(b"authorization", token())])
    assert await p.on_request(by_token) is None
    assert by_token.identity is not None and by_token.identity.credential == "bearer"
    both = make_ctx(headers=[(b"authorization", token()), (b"x-service-token", TENANT_KEY.encode())])
    answer = await p.on_request(both)
    assert isinstance(answer, LocalResponse) and answer.status == 401
    none = await p.on_request(make_ctx())
    assert isinstance(none, LocalResponse) and none.status == 401
    assert dict(none.headers)[b"www-authenticate"] == (
        b'Bearer realm="gatehouse", ApiKey realm="gatehouse", header="x-service-token"')


async def test_optional_routes_and_owned_headers() -> None:
    p = plugins()
    anonymous = make_ctx()
    assert await p["maybe"].on_request(anonymous) is None and anonymous.identity is None
    bad = await p["maybe"].on_request(make_ctx(headers=[(b"x-service-token", b"z" * 20)]))
    assert isinstance(bad, LocalResponse) and bad.status == 401
    # Every auth instance owns every key set's header, a JWT-only route's too.
    assert p["jwt"].owned_headers() == ("x-service-token",)


def test_the_key_header_never_reaches_an_upstream() -> None:
    from controlplane.build import owned_headers

    loaded = load_config_text(CONFIG, "inline.yaml", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    assert "x-service-token" in owned_headers(loaded, gateway.table)
    policy = gateway.proxy._headers
    out = policy.build([(b"x-service-token", b"secret"), (b"x_service_token", b"secret"), (b"accept", b"*/*")],
                       peer="10.0.0.1", scheme="http", request_id=(b"x-request-id", b"r"), correlation_id=None,
                       extra=[])
    assert [k for k, _ in out if b"service" in k] == []
