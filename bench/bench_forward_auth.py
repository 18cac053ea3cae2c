"""Forward auth (plugins/forward_auth) when the worker already holds the answer: describing
the request and finding its answer, the whole request hook."""

from __future__ import annotations

import time

import pytest
import yaml

from bench.support.coroutines import finish
from bench.support.fixture_types import Benchmark
from controlplane.build import build_gateway, new_runtime
from controlplane.config.loader import load_config_text
from hotpath.context import Identity, RequestContext
from plugins.forward_auth import ForwardAuthPlugin
from plugins.forward_auth.answers import Answer
from tests.support.requests import make_ctx

pytestmark = pytest.mark.benchmark(group="forward-auth")


def bench_cached_answer(benchmark: Benchmark) -> None:
    config = {
        "services": {"b": {"urls": ["http://127.0.0.1:9"]}},
        "routes": [{"name": "admin", "path": "/admin", "service": "b", "plugins": {"forward_auth": {
            "url": "http://127.0.0.1:9/authz", "headers": ["x-tenant-id"],
            "response_headers": ["x-admin-id", "x-admin-roles"], "cache_ttl": 3600}}}],
    }
    loaded = load_config_text(yaml.safe_dump(config), "<bench>", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    plugin = gateway.table.routes[0].chain.plugins[0]
    assert isinstance(plugin, ForwardAuthPlugin)
    identity = Identity("admin-42", "pro", frozenset({"staff", "ops"}), frozenset({"users:write"}))
    headers = [(b"host", b"api.example.com"), (b"x-tenant-id", b"t-1")]

    def request() -> RequestContext:
        ctx = make_ctx("DELETE", "/admin/tenants/t-1/users/9", headers=headers)
        ctx.identity = identity
        return ctx

    answer = Answer(200, [(b"x-admin-id", b"admin-42"), (b"x-admin-roles", b"tenant-admin")], time.time() + 3600)
    plugin._answers.put(plugin.describe(request()), answer)  # the answer a first call brought

    def one() -> int:
        ctx = request()
        assert finish(plugin.on_request(ctx)) is None
        return len(ctx.upstream_headers)

    assert benchmark(one) == 2
