"""Security response headers (plugins/security_headers): adding them in the request phase,
and the response-phase check for the upstream's own, without and with a clash."""

from __future__ import annotations

import pytest

from bench.support.coroutines import finish
from bench.support.fixture_types import Benchmark
from hotpath.context import Header, RouteInfo
from hotpath.plugin import PluginSetup
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from hotpath.responses import ResponseHead
from hotpath.runtime import WorkerRuntime
from plugins.security_headers import SecurityHeadersPlugin
from plugins.security_headers.config import SecurityHeadersConfig
from plugins.security_headers.plugin import compile_headers
from tests.support.requests import make_ctx

pytestmark = pytest.mark.benchmark(group="security-headers")

UPSTREAM: list[Header] = [
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
    (b"content-type", b"application/json"),
    (b"content-length", b"37"),
    (b"cache-control", b"no-cache"),
    (b"x-request-id", b"5f2b8c1d2f0e4c1a9a530c7b1f0e9d11"),
]
OURS = compile_headers(SecurityHeadersConfig())


def plugin(**config: object) -> SecurityHeadersPlugin:
    import msgspec

    runtime = WorkerRuntime(SharedState("memory", RedisConfig()))
    return SecurityHeadersPlugin(msgspec.convert(config, SecurityHeadersConfig),
                                 PluginSetup(RouteInfo("api", "/api", "b"), None, runtime))


def bench_request_phase(benchmark: Benchmark) -> None:
    p = plugin()

    def one() -> int:
        ctx = make_ctx()
        finish(p.on_request(ctx))
        return len(ctx.response_headers)

    assert benchmark(one) == 5


@pytest.mark.parametrize("clash", [False, True], ids=["upstream-sets-none", "upstream-sets-csp"])
def bench_response_phase(benchmark: Benchmark, clash: bool) -> None:
    p = plugin()
    ctx = make_ctx()
    upstream = [*UPSTREAM, (b"content-security-policy", b"default-src 'self'")] if clash else UPSTREAM

    def one() -> int:
        head = ResponseHead(200, [*upstream, *OURS])
        finish(p.on_response(ctx, head))
        return len(head.headers)

    assert benchmark(one) == len(UPSTREAM) + 5
