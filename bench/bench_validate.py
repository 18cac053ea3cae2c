"""The validate plugin's per-request units (plugins/validate): a ~1 KB JSON body checked
against its 2020-12 schema (read, parse, validate), a query string, and an upload's parts
fed through the streaming form check."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

import msgspec
import pytest

from bench.support.fixture_types import Benchmark
from bench.support.search_body import BODY_BYTES, SCHEMA
from hotpath.context import RequestContext, RouteInfo
from hotpath.plugin import PluginSetup
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from hotpath.runtime import WorkerRuntime
from plugins.validate.config import ValidateConfig
from plugins.validate.form import FormCheck
from plugins.validate.plugin import ValidatePlugin

pytestmark = pytest.mark.benchmark(group="validate")


def _plugin(**config: Any) -> ValidatePlugin:
    setup = PluginSetup(RouteInfo("bench", "/search", "svc", (), 1 << 24), None,
                        WorkerRuntime(SharedState("memory", RedisConfig())))
    return ValidatePlugin(msgspec.convert(config, ValidateConfig), setup)


def _ctx(body: bytes, ctype: bytes, query: bytes = b"") -> RequestContext:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", ctype)]
    ctx = RequestContext({"method": "POST", "query_string": query, "headers": headers}, receive, headers,
                         peer="127.0.0.1", client_ip="127.0.0.1", request_id="r", correlation_id=None, started=0.0)
    ctx.body_length = len(body)
    return ctx


@pytest.mark.parametrize("duplicate_keys", ["refuse", "last_wins"])
def bench_json_body_check(benchmark: Benchmark, duplicate_keys: str) -> None:
    """One request: read the body, parse it, check it against the schema (valid: forwarded)."""
    plugin = _plugin(body=SCHEMA, duplicate_keys=duplicate_keys)
    loop = asyncio.new_event_loop()

    def check() -> Any:
        ctx = _ctx(BODY_BYTES, b"application/json")
        return loop.run_until_complete(plugin.on_request(ctx)), ctx

    verdict, ctx = benchmark(check)
    loop.close()
    assert verdict is None and ctx.body == BODY_BYTES


def bench_query_check(benchmark: Benchmark) -> None:
    plugin = _plugin(query={"type": "object", "properties": {"page": {"type": "integer", "minimum": 1},
                                                             "sort": {"enum": ["new", "top"]}}})
    loop = asyncio.new_event_loop()

    def check() -> Any:
        ctx = _ctx(b"", b"", b"page=3&sort=top")
        ctx.body_length = 0
        return loop.run_until_complete(plugin.on_request(ctx))

    assert benchmark(check) is None
    loop.close()


def _upload() -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(bytes(range(256)) * 4096)  # 1 MiB of samples
    boundary = b"bench-boundary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n" + buf.getvalue() + b"\r\n--" + boundary +
            b'\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n' + b"a calm piano over rain " * 4 +
            b"\r\n--" + boundary + b"--\r\n")
    return boundary, body


def bench_upload_form_check_per_mib(benchmark: Benchmark) -> None:
    """An upload of ~1 MiB fed in 64 KiB chunks, as the proxy streams it."""
    plugin = _plugin(multipart={"files": {"audio": {"types": ["audio/wav"], "min_count": 1}},
                                "fields": {"prompt": {"schema": {"type": "string", "minLength": 50},
                                                      "required": True}}})
    boundary, body = _upload()
    rules = plugin._form
    assert rules is not None
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    def feed() -> int:
        check = FormCheck(rules, boundary, _ctx(b"", b""))
        for chunk in chunks:
            check.feed(chunk)
        check.finish(True)
        return len(chunks)

    assert benchmark(feed) == len(chunks)
