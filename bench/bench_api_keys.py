"""API-key verification (plugins/auth/api_keys.py): a key of the configuration among 1000,
a key Redis holds once the worker remembers it, a wrong key, and the auth plugin's whole
request hook on a route that takes keys."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml

from bench.support.coroutines import finish
from bench.support.fixture_types import Benchmark
from controlplane.build import build_gateway, new_runtime
from controlplane.config.loader import load_config_text
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from plugins.auth import AuthPlugin
from plugins.auth.api_key_config import KeySetConfig, digest_text
from plugins.auth.api_keys import KeyRefused, KeySet
from plugins.auth.key_store import KeyStore, new_record
from plugins.auth.verifier import Verified
from tests.support.processes import RedisServer
from tests.support.requests import make_ctx

pytestmark = pytest.mark.benchmark(group="api-keys")

KEYS = [f"ghk_bench_{i:04d}_{hashlib.sha256(str(i).encode()).hexdigest()[:24]}" for i in range(1000)]


def _key_config(redis: bool = False) -> KeySetConfig:
    import msgspec

    keys = [{"id": f"k{i}", "hash": digest_text(k.encode()), "subject": f"client-{i}", "tier": "pro",
             "scopes": ["orders:read"]} for i, k in enumerate(KEYS)]
    return msgspec.convert({"keys": keys, "redis": redis}, KeySetConfig)


def bench_configured_key(benchmark: Benchmark) -> None:
    keys = KeySet("bench", _key_config(), None)
    found = benchmark(keys.check, KEYS[500].encode())
    assert isinstance(found, Verified) and found.identity.subject == "client-500"


def bench_wrong_key(benchmark: Benchmark) -> None:
    keys = KeySet("bench", _key_config(), None)
    wrong = (KEYS[500][:-1] + "x").encode()

    def refused() -> str:
        try:
            keys.check(wrong)
        except KeyRefused as exc:
            return exc.reason
        return "accepted"

    assert benchmark(refused) == "unknown_key"


def bench_redis_key_remembered(benchmark: Benchmark, redis_server: RedisServer,
                               loop: asyncio.AbstractEventLoop) -> None:
    state = SharedState("redis", RedisConfig(url=redis_server.url, command_timeout=1.0))
    loop.run_until_complete(state.start())
    try:
        store = KeyStore(state.redis, state.keys.feature("apikey"), "bench-redis", 1.0)
        value = "ghk_bench_redis_key_0123456789abcdef"
        digest = hashlib.sha256(value.encode()).hexdigest()
        loop.run_until_complete(state.redis.delete([store.record_key(digest)]))
        loop.run_until_complete(state.redis.delete([f"{state.keys.feature('apikey')}:{{bench-redis}}:ids"]))
        loop.run_until_complete(store.create(new_record("r1", "partner", "pro"), digest))
        keys = KeySet("bench-redis", _key_config(redis=True), store)
        first = keys.check(value.encode())
        assert isinstance(first, bytes)  # only Redis knows it: one lookup, then remembered
        loop.run_until_complete(keys.lookup(first))
        found = benchmark(keys.check, value.encode())
        assert isinstance(found, Verified) and found.identity.subject == "partner"
    finally:
        loop.run_until_complete(state.close())


def bench_auth_plugin_with_a_key(benchmark: Benchmark) -> None:
    config = {
        "services": {"b": {"urls": ["http://127.0.0.1:9"]}},
        "plugins": {"auth": {"key_sets": {"bench": {"keys": [
            {"id": f"k{i}", "hash": digest_text(k.encode()), "subject": f"client-{i}", "tier": "pro"}
            for i, k in enumerate(KEYS)]}}}},
        "routes": [{"name": "api", "path": "/api", "service": "b", "plugins": {"auth": {"credentials": ["api_key"]}}}],
    }
    loaded = load_config_text(yaml.safe_dump(config), "<bench>", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    plugin = gateway.table.routes[0].chain.plugins[0]
    assert isinstance(plugin, AuthPlugin)
    headers = [(b"host", b"api.example.com"), (b"accept", b"application/json"), (b"x-api-key", KEYS[7].encode())]

    def one() -> str | None:
        ctx = make_ctx("GET", "/api/orders", headers=headers)
        assert finish(plugin.on_request(ctx)) is None
        return ctx.identity.subject if ctx.identity is not None else None

    assert benchmark(one) == "client-7"
