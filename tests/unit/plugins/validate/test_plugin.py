"""The validate plugin in process: what it refuses and what it lets through, with the
details a client gets. The whole path through a real gateway is in
tests/integration/test_validate.py."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

import orjson
import pytest

from hotpath.audit import AuditType
from hotpath.context import RequestContext, RouteInfo
from hotpath.errors import GatewayError
from hotpath.plugin import PluginSetup
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from hotpath.runtime import WorkerRuntime
from plugins.validate.config import ValidateConfig
from plugins.validate.form import FormCheck
from plugins.validate.plugin import ValidatePlugin

SEARCH = {
    "type": "object",
    "required": ["query", "limit"],
    "additionalProperties": False,
    "properties": {"query": {"type": "string", "minLength": 1}, "limit": {"type": "integer", "minimum": 1,
                                                                          "maximum": 50}},
}


def plugin(path: str = "/search", max_body: int = 10_000, **config: Any) -> ValidatePlugin:
    import msgspec

    cfg = msgspec.convert(config, ValidateConfig)
    setup = PluginSetup(RouteInfo("r", path, "svc", (), max_body), None, WorkerRuntime(SharedState("memory",
                                                                                                  RedisConfig())))
    return ValidatePlugin(cfg, setup)


def request(body: bytes = b"", *, method: str = "POST", ctype: bytes | None = b"application/json",
            query: bytes = b"", params: dict[str, str] | None = None) -> RequestContext:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = [(b"content-type", ctype)] if ctype is not None else []
    scope = {"method": method, "query_string": query, "headers": headers}
    ctx = RequestContext(scope, receive, headers, peer="127.0.0.1", client_ip="127.0.0.1", request_id="rid",
                         correlation_id=None, started=0.0)
    ctx.body_length = len(body)
    ctx.path_params = params
    return ctx


def run(p: ValidatePlugin, ctx: RequestContext) -> tuple[int, dict[str, Any]] | None:
    verdict = asyncio.run(p.on_request(ctx))
    if verdict is None:
        return None
    return verdict.status, orjson.loads(verdict.body)


def test_valid_body_is_kept_for_the_proxy_byte_for_byte() -> None:
    raw = b'{"query":  "rain",\n "limit": 5}'
    ctx = request(raw)
    assert run(plugin(body=SEARCH), ctx) is None
    assert ctx.body == raw


@pytest.mark.parametrize(("body", "pointer", "expected"), [
    (b'{"limit": 5}', "/query", "a value (required)"),
    (b'{"query": "x", "limit": 70}', "/limit", "a number <= 50"),
    (b'{"query": "x", "limit": "5"}', "/limit", "integer"),
    (b'{"query": "", "limit": 5}', "/query", "at least 1 characters"),
    (b'{"query": "x", "limit": 5, "secret-field": "hunter2"}', "/secret-field", "no such property"),
])
def test_invalid_body_names_the_field_and_never_echoes_the_value(body: bytes, pointer: str, expected: str) -> None:
    ctx = request(body)
    status, answer = run(plugin(body=SEARCH), ctx)  # type: ignore[misc]
    assert status == 400
    assert answer["error"]["code"] == "BAD_REQUEST"
    first = answer["error"]["details"]["errors"][0]
    assert first == {"in": "body", "pointer": pointer, "expected": expected}
    assert b"hunter2" not in orjson.dumps(answer)
    verdict = asyncio.run(plugin(body=SEARCH).on_request(request(body)))
    assert verdict is not None and verdict.refusal is not None
    assert verdict.refusal.kind is AuditType.VALIDATION_FAILED and verdict.refusal.reason == "schema"


@pytest.mark.parametrize("body", [b"{", b'{"query": NaN, "limit": 1}', b'{"a": 1, "a": 2}', b"[" * 5000,
                                  b"\xff\xfe{}", b'{"limit": 1' + b"0" * 5000 + b"}"])
def test_malformed_json_is_400(body: bytes) -> None:
    status, answer = run(plugin(body=SEARCH), request(body))  # type: ignore[misc]
    assert status == 400 and answer["error"]["details"]["errors"][0]["in"] == "body"


def test_duplicate_keys_may_be_allowed_last_wins() -> None:
    assert run(plugin(body=SEARCH, duplicate_keys="last_wins"), request(b'{"query":"a","limit":90,"limit":2}')) \
        is None


def test_media_type_and_missing_body() -> None:
    status, answer = run(plugin(body=SEARCH), request(b"query=x", ctype=b"application/x-www-form-urlencoded"))  # type: ignore[misc]
    assert status == 415 and answer["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert answer["error"]["details"] == {"allowed": ["application/json"]}
    assert run(plugin(body=SEARCH), request(b'{"query":"a","limit":2}', ctype=b"Application/JSON; charset=utf-8")) \
        is None
    status, _ = run(plugin(body=SEARCH), request(b""))  # type: ignore[misc]
    assert status == 400
    assert run(plugin(body=SEARCH), request(b"", method="GET", ctype=None)) is None


def test_body_over_the_route_limit_is_413() -> None:
    status, answer = run(plugin(body=SEARCH, max_body=10), request(b'{"query":"abc","limit":2}'))  # type: ignore[misc]
    assert status == 413 and answer["error"]["details"] == {"limit_bytes": 10}


def test_query_and_path_params_are_converted_by_their_schema() -> None:
    p = plugin(path="/jobs/{id:int}", query={"type": "object", "properties": {"page": {"type": "integer",
                                                                                       "maximum": 9}}},
               path_params={"type": "object", "properties": {"id": {"type": "integer", "maximum": 1000}}})
    assert run(p, request(method="GET", ctype=None, query=b"page=3", params={"id": "7"})) is None
    status, answer = run(p, request(method="GET", ctype=None, query=b"page=30&page=x", params={"id": "7000"}))  # type: ignore[misc]
    assert status == 400
    assert [(e["in"], e["pointer"]) for e in answer["error"]["details"]["errors"]] == [("path", "/id"),
                                                                                        ("query", "/page")]


def test_schema_file_errors_name_the_file_and_the_schema_path(tmp_path: Any) -> None:
    (tmp_path / "bad.json").write_text('{"type": "object", "properties": {"a": {"minimum": "x"}}}')
    import msgspec

    cfg = msgspec.convert({"body": "bad.json"}, ValidateConfig)
    setup = PluginSetup(RouteInfo("search", "/s", "svc", (), 100), None,
                        WorkerRuntime(SharedState("memory", RedisConfig())), str(tmp_path))
    with pytest.raises(ValueError) as caught:
        ValidatePlugin(cfg, setup)
    assert str(tmp_path / "bad.json") in str(caught.value)
    assert "/properties/a/minimum" in str(caught.value)
    assert "route 'search'" in str(caught.value)


# -- forms ---------------------------------------------------------------------------------

UPLOAD = {
    "multipart": {
        "files": {"audio": {"types": ["audio/mpeg", "audio/wav", "audio/flac"], "max_bytes": 100_000,
                            "min_count": 1}},
        "fields": {"prompt": {"schema": {"type": "string", "minLength": 50, "maxLength": 500}, "required": True}},
    }
}


def wav_bytes(frames: int = 4000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * frames)
    return buf.getvalue()


def form(*parts: tuple[str, bytes, str | None, str | None], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, data, filename, ctype in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename:
            disp += f'; filename="{filename}"'
        out += disp.encode() + b"\r\n"
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def check_form(body: bytes, chunk: int = 700) -> GatewayError | None:
    p = plugin(path="/upload", max_body=1_000_000, **UPLOAD)
    ctx = request(body, ctype=b"multipart/form-data; boundary=XyZ")
    assert run(p, ctx) is None
    assert ctx.body_taps is not None
    tap = ctx.body_taps[0]
    assert isinstance(tap, FormCheck)
    try:
        for i in range(0, len(body), chunk):
            tap.feed(body[i : i + chunk])
        tap.finish(True)
    except GatewayError as refused:
        return refused
    return None


PROMPT = ("a calm piano over rain, " * 4).encode()


def test_a_good_form_passes() -> None:
    assert check_form(form(("audio", wav_bytes(), "a.wav", "audio/wav"), ("prompt", PROMPT, None, None))) is None


@pytest.mark.parametrize(("parts", "status", "part"), [
    ([("audio", wav_bytes(), "a.wav", "audio/wav"), ("prompt", b"too short", None, None)], 400, "prompt"),
    ([("audio", b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(600), "a.wav", "audio/wav"),
      ("prompt", PROMPT, None, None)], 415, "audio"),
    ([("audio", b"MZ\x90\x00\x03" + bytes(600), "a.mp3", "audio/mpeg"), ("prompt", PROMPT, None, None)], 415, "audio"),
    ([("audio", wav_bytes(), "a.wav", "text/plain"), ("prompt", PROMPT, None, None)], 415, "audio"),
    ([("audio", wav_bytes(60_000), "a.wav", "audio/wav"), ("prompt", PROMPT, None, None)], 413, "audio"),
    ([("audio", wav_bytes(), "a.wav", "audio/wav"), ("audio", wav_bytes(), "b.wav", "audio/wav")], 400, "audio"),
    ([("audio", wav_bytes(), "a.wav", "audio/wav"), ("other", b"x", None, None)], 400, "other"),
    ([("audio", wav_bytes(), "a.wav", "audio/wav")], 400, "prompt"),
    ([("prompt", PROMPT, "p.txt", "text/plain")], 400, "prompt"),
])
def test_bad_forms_name_the_part(parts: list[tuple[str, bytes, str | None, str | None]], status: int,
                                 part: str) -> None:
    refused = check_form(form(*parts))
    assert refused is not None and refused.status == status, refused
    assert refused.details is not None and refused.details["errors"][0]["part"] == part


@pytest.mark.parametrize("body", [
    b"no boundary here at all",
    b"--XyZ\r\n\r\nheaderless part\r\n--XyZ--\r\n",
    form(("prompt", PROMPT, None, None))[:-9],  # cut before its closing boundary
    b"--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--\r\n",
    b"--XyZ\r\n" + b"X-Long: " + b"a" * 10_000 + b"\r\n\r\nx\r\n--XyZ--\r\n",
])
def test_hostile_forms_are_400(body: bytes) -> None:
    refused = check_form(body)
    assert refused is not None and refused.status == 400


def test_missing_boundary_is_refused_before_streaming() -> None:
    p = plugin(path="/upload", **UPLOAD)
    status, answer = run(p, request(b"x", ctype=b"multipart/form-data"))  # type: ignore[misc]
    assert status == 400 and answer["error"]["details"]["errors"][0]["in"] == "form"


def test_config_refuses_types_that_cannot_be_sniffed() -> None:
    with pytest.raises(ValueError, match="magic bytes"):
        plugin(multipart={"files": {"doc": {"types": ["text/plain"]}}})
