"""Signed URLs (plugins/signed_url): verifying a signature, the plugin's whole verifying
hook (the signature taken off the query), and signing one."""

from __future__ import annotations

import msgspec
import pytest

from bench.support.coroutines import finish
from bench.support.fixture_types import Benchmark
from hotpath.context import RouteInfo
from hotpath.plugin import PluginSetup
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from hotpath.runtime import WorkerRuntime
from plugins.signed_url import SignedUrlPlugin
from plugins.signed_url.config import SignedUrlConfig, SignedUrlSettings
from plugins.signed_url.plugin import signer_of
from tests.support.requests import make_ctx

pytestmark = pytest.mark.benchmark(group="signed-url")

SETTINGS = msgspec.convert({"keys": [{"id": "k2", "secret": "b" * 40}, {"id": "k1", "secret": "a" * 40,
                                                                       "verify_only": True}]}, SignedUrlSettings)
PATH = "/files/jobs/8f14e45f/output.mp4"


def bench_verify(benchmark: Benchmark) -> None:
    signer = signer_of(SETTINGS)
    url, _ = signer.sign("GET", PATH, ttl=3600, query=b"download=1")
    path, _, query = url.partition("?")
    assert benchmark(signer.verify, "GET", path, query.encode(), b"") == b"download=1"


def bench_sign(benchmark: Benchmark) -> None:
    signer = signer_of(SETTINGS)
    url, _ = benchmark(signer.sign, "GET", PATH, ttl=3600)
    assert url.startswith(PATH + "?exp=")


def bench_plugin_verify(benchmark: Benchmark) -> None:
    runtime = WorkerRuntime(SharedState("memory", RedisConfig()))
    plugin = SignedUrlPlugin(SignedUrlConfig(), PluginSetup(RouteInfo("files", "/files", "storage"), SETTINGS,
                                                            runtime))
    url, _ = signer_of(SETTINGS).sign("GET", PATH, ttl=3600)
    path, _, query = url.partition("?")
    raw = query.encode()

    def one() -> bytes:
        ctx = make_ctx("GET", path, query=raw)
        assert finish(plugin.on_request(ctx)) is None
        return ctx.query

    assert benchmark(one) == b""
