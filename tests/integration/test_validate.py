"""Validation at the edge through the real gateway (Granian, 2 workers) against a real
upstream that records what it received (tests/support/upstream_app.py ``/record/``):
path templates, JSON Schema, body types, streamed uploads, hostile input (issue 29)."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, RedisServer, Upstream
from tests.support.prom import scrape, value

MB = 1024 * 1024

SEARCH_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["query", "limit"],
    "additionalProperties": False,
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 200},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "offset": {"type": "integer", "minimum": 0},
        "sort": {"enum": ["relevance", "newest"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "filters": {"type": "object", "properties": {"language": {"type": "string", "pattern": "^[a-z]{2}$"},
                                                     "from": {"type": "string", "format": "date"}}},
        "nested": {},
    },
}


@pytest.fixture(scope="module")
def gw(upstream: Upstream, redis_server: RedisServer, gateway_factory: GatewayFactory) -> Gateway:
    record = {"upstream_prefix": "/record", "service": "backend"}
    config: dict[str, Any] = {
        "redis": {"url": redis_server.url},
        "services": {"backend": {"urls": [upstream.url], "timeouts": {"connect": 1, "read": 10, "total": 60}}},
        "plugins": {"rate_limit": {"policies": {"per_job": {
            "key": "path_param", "param": "job_id", "anonymous_tier": "jobs", "default_tier": "jobs",
            "tiers": {"jobs": {"limits": [{"algorithm": "sliding_window", "limit": 3, "window": 600}]}},
        }}}},
        "routes": [
            {"name": "content", "path": "/api/v1/content/{id:int}", "match": "exact", "methods": ["GET"], **record,
             "plugins": {"validate": {"path_params": {"type": "object", "properties": {
                 "id": {"type": "integer", "maximum": 1_000_000}}}}}},
            {"name": "stream", "path": "/jobs/{job_id}/stream", "match": "exact", "methods": ["GET"], **record,
             "plugins": {"rate_limit": {"policy": "per_job"}}},
            {"name": "search", "path": "/search", "match": "exact", "methods": ["POST"], **record,
             "plugins": {"validate": {"content_types": ["application/json"], "body": "schemas/search.json"}}},
            {"name": "upload", "path": "/upload", "match": "exact", "methods": ["POST"], **record,
             "max_body_bytes": 12 * MB,
             "plugins": {"validate": {"multipart": {
                 "files": {"audio": {"types": ["audio/mpeg", "audio/wav", "audio/flac"], "max_bytes": 10 * MB,
                                     "min_count": 1}},
                 "fields": {"prompt": {"schema": {"type": "string", "minLength": 50, "maxLength": 500},
                                       "required": True}},
             }}}},
        ],
    }
    return gateway_factory(config, workers=2, files={"schemas/search.json": json.dumps(SEARCH_SCHEMA)})


@pytest.fixture(autouse=True)
def clean(upstream: Upstream) -> None:
    upstream.reset()


def records(upstream: Upstream, path: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{upstream.url}/_records", params={"path": path}, timeout=5).json()
    return data


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["code"] == code and body["request_id"] == r.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


# -- 1. path templates ---------------------------------------------------------------------


def test_int_template_matches_digits_and_its_parameter_reaches_plugins(gw: Gateway, upstream: Upstream) -> None:
    r = httpx.get(f"{gw.url}/api/v1/content/42", timeout=10)
    assert r.status_code == 200, r.text
    assert [x["path"] for x in records(upstream, "/record/")] == ["/record/api/v1/content/42"]
    error_of(httpx.get(f"{gw.url}/api/v1/content/x", timeout=10), 404, "NOT_FOUND")
    # The validate plugin reads the parameter, as an integer by its schema.
    err = error_of(httpx.get(f"{gw.url}/api/v1/content/7000000", timeout=10), 400, "BAD_REQUEST")
    assert err["details"]["errors"] == [{"in": "path", "pointer": "/id", "expected": "a number <= 1000000"}]
    assert len(records(upstream, "/record/")) == 1


def test_rate_limit_keyed_by_a_path_parameter_across_workers(gw: Gateway, upstream: Upstream) -> None:
    job, other = uuid.uuid4().hex, uuid.uuid4().hex
    # New connections each, so both workers take requests; the count is the job's, shared.
    statuses = [httpx.get(f"{gw.url}/jobs/{job}/stream", headers={"x-forwarded-for": f"10.0.0.{i}"},
                          timeout=10).status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert httpx.get(f"{gw.url}/jobs/{other}/stream", timeout=10).status_code == 200
    assert len(records(upstream, f"/record/jobs/{job}/")) == 3


# -- 2. JSON Schema ------------------------------------------------------------------------


def test_a_valid_body_reaches_the_upstream_byte_for_byte(gw: Gateway, upstream: Upstream) -> None:
    raw = '{ "query" : "caf\\u00e9 \u00e9t\u00e9",\n\t"limit": 5, "filters": {"language": "fr"}, "nested": [[{}]] }'
    body = raw.encode()
    r = httpx.post(f"{gw.url}/search", content=body, headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    [seen] = records(upstream, "/record/search")
    assert seen["complete"] and seen["body"].encode("latin-1") == body
    assert seen["content_type"] == "application/json"


INVALID_BODIES = [
    ({"limit": 5}, "/query", "a value (required)"),
    ({"query": "x"}, "/limit", "a value (required)"),
    ({"query": "x", "limit": 0}, "/limit", "a number >= 1"),
    ({"query": "x", "limit": 51}, "/limit", "a number <= 50"),
    ({"query": "x", "limit": "10"}, "/limit", "integer"),
    ({"query": "", "limit": 5}, "/query", "at least 1 characters"),
    ({"query": "x" * 201, "limit": 5}, "/query", "at most 200 characters"),
    ({"query": "x", "limit": 5, "sort": "oldest"}, "/sort", 'one of ["relevance", "newest"]'),
    ({"query": "x", "limit": 5, "filters": {"language": "english"}}, "/filters/language",
     'a string matching "^[a-z]{2}$"'),
    ({"query": "x", "limit": 5, "password": "hunter2-secret"}, "/password", "no such property"),
]


def test_ten_invalid_bodies_get_400_with_a_pointer_and_never_reach_the_upstream(
    gw: Gateway, upstream: Upstream
) -> None:
    for body, pointer, expected in INVALID_BODIES:
        r = httpx.post(f"{gw.url}/search", json=body, timeout=10)
        err = error_of(r, 400, "BAD_REQUEST")
        assert err["details"]["errors"][0] == {"in": "body", "pointer": pointer, "expected": expected}, body
        assert "hunter2" not in r.text and "x" * 201 not in r.text
    assert records(upstream, "/record/search") == []
    # Counted per route and reason (deferred counters publish within a second or so).
    deadline = time.monotonic() + 15
    while value(scrape(gw.url), "gatehouse_validation_failures_total", route="search", reason="schema") < 10:
        assert time.monotonic() < deadline, "validation failures were not counted"
        time.sleep(0.3)


# -- 3. content types ----------------------------------------------------------------------


def test_disallowed_content_type_gets_415_and_malformed_json_400(gw: Gateway, upstream: Upstream) -> None:
    err = error_of(httpx.post(f"{gw.url}/search", content=b"query=x&limit=5",
                              headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10),
                   415, "UNSUPPORTED_MEDIA_TYPE")
    assert err["details"] == {"allowed": ["application/json"]}
    error_of(httpx.post(f"{gw.url}/search", content=b'{"query": "x", "limit": 5', timeout=10,
                        headers={"content-type": "application/json"}), 400, "BAD_REQUEST")
    assert records(upstream, "/record/search") == []


# -- 4. uploads ----------------------------------------------------------------------------


def wav_file(size: int) -> bytes:
    """A real WAV of about ``size`` bytes: 16-bit mono at 44.1 kHz, a sweep of tones."""
    frames = (size - 44) // 2
    pcm = bytes((i * 7) & 0xFF for i in range(4096)) * (frames * 2 // 4096 + 1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(pcm[: frames * 2])
    return buf.getvalue()


PROMPT = "a slow piano piece over soft rain, recorded close, with room noise kept"


def multipart(parts: list[tuple[str, bytes, str | None, str | None]], boundary: str = "gh-boundary-7") -> bytes:
    out = io.BytesIO()
    for name, data, filename, ctype in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'Content-Disposition: form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(disp.encode() + b"\r\n")
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n")
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


FORM = {"content-type": "multipart/form-data; boundary=gh-boundary-7"}


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_9_mb_wav_passes_intact_in_flat_memory(gw: Gateway, upstream: Upstream) -> None:
    audio = wav_file(9 * MB)
    body = multipart([("audio", audio, "take.wav", "audio/wav"), ("prompt", PROMPT.encode(), None, None)])
    pids = gw.worker_pids()
    assert len(pids) == 2
    # Warm up both workers' upload path, so what follows measures an upload, not imports.
    for _ in range(4):
        small = multipart([("audio", wav_file(100_000), "w.wav", "audio/wav"), ("prompt", PROMPT.encode(), None,
                                                                               None)])
        assert httpx.post(f"{gw.url}/upload", content=small, headers=FORM, timeout=30).status_code == 200
    before = {p: rss_kb(p) for p in pids}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for p in pids:
                peak[p] = max(peak[p], rss_kb(p))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = httpx.post(f"{gw.url}/upload?t=big-ok", content=chunks(body), headers=FORM, timeout=60)
    finally:
        done.set()
        sampler.join()
    assert r.status_code == 200, r.text
    [seen] = [x for x in records(upstream, "/record/upload") if x["query"] == "t=big-ok"]
    assert seen["complete"] and seen["size"] == len(body)
    assert seen["sha256"] == r.json()["sha256"] == __import__("hashlib").sha256(body).hexdigest()
    growth_kb = max(peak[p] - before[p] for p in pids)
    # The upload streams: a worker never grows by more than a fraction of the file.
    assert growth_kb * 1024 < len(audio) / 4, f"a worker grew by {growth_kb} KB for a {len(audio)} byte upload"


def test_an_11_mb_file_gets_413_and_the_upstream_never_sees_it_complete(gw: Gateway, upstream: Upstream) -> None:
    body = multipart([("prompt", PROMPT.encode(), None, None),
                      ("audio", wav_file(11 * MB), "long.wav", "audio/wav")])
    r = httpx.post(f"{gw.url}/upload?t=too-big", content=chunks(body), headers=FORM, timeout=60)
    err = error_of(r, 413, "PAYLOAD_TOO_LARGE")
    assert err["details"]["errors"][0]["part"] == "audio"
    assert err["details"]["errors"][0]["limit_bytes"] == 10 * MB
    deadline = time.monotonic() + 10
    while True:
        seen = [x for x in records(upstream, "/record/upload") if x["query"] == "t=too-big"]
        if seen and "sha256" in seen[0]:
            break  # the upstream has finished reading what it got
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [x["complete"] for x in seen] == [False]
    assert 0 < seen[0]["size"] < len(body)


def test_wrong_magic_bytes_get_415(gw: Gateway, upstream: Upstream) -> None:
    mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(4000)
    for data, name, declared in ((mp3, "song.wav", "audio/wav"), (b"MZ\x90\x00" + bytes(4000), "x.mp3", "audio/mpeg")):
        body = multipart([("prompt", PROMPT.encode(), None, None), ("audio", data, name, declared)])
        err = error_of(httpx.post(f"{gw.url}/upload", content=body, headers=FORM, timeout=10), 415,
                       "UNSUPPORTED_MEDIA_TYPE")
        assert err["details"]["errors"][0]["part"] == "audio"
        assert err["details"]["errors"][0]["expected"] == declared
    assert [x for x in records(upstream, "/record/upload") if x["complete"]] == []


def test_a_20_character_prompt_gets_400_naming_the_field(gw: Gateway, upstream: Upstream) -> None:
    body = multipart([("audio", wav_file(200_000), "a.wav", "audio/wav"), ("prompt", b"x" * 20, None, None)])
    err = error_of(httpx.post(f"{gw.url}/upload", content=body, headers=FORM, timeout=10), 400, "BAD_REQUEST")
    assert err["details"]["errors"][0] == {"in": "form", "part": "prompt", "pointer": "",
                                           "expected": "at least 50 characters"}
    assert [x for x in records(upstream, "/record/upload") if x["complete"]] == []


# -- 5. hostile input ----------------------------------------------------------------------

HOSTILE_JSON = [
    b'{"query": "x", "limit": 5, "nested": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"query": "x", "limit": 5, "nested": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b'{"query": "x", "limit": 5, "tags": [' + b",".join([b'"t"'] * 100_000) + b"]}",
    b'{"query": "x", "limit": 5, "limit": 500}',
    b'{"query": "x", "limit": 5, "query": "y"}',
]


@pytest.mark.parametrize("body", HOSTILE_JSON, ids=["deep-arrays", "deep-objects", "100k-array", "dup-limit",
                                                   "dup-query"])
def test_hostile_json_gets_a_4xx(gw: Gateway, upstream: Upstream, body: bytes) -> None:
    r = httpx.post(f"{gw.url}/search", content=body, headers={"content-type": "application/json"}, timeout=30)
    error_of(r, 400, "BAD_REQUEST")
    assert records(upstream, "/record/search") == []


@pytest.mark.parametrize(("body", "content_type"), [
    (multipart([("prompt", PROMPT.encode(), None, None)]), "multipart/form-data"),  # no boundary
    (b"--gh-boundary-7\r\n\r\nheaderless\r\n--gh-boundary-7--\r\n", FORM["content-type"]),
    (b"--gh-boundary-7\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--gh-boundary-7--\r\n",
     FORM["content-type"]),
    (b"garbage without any boundary", FORM["content-type"]),
    (multipart([("prompt", PROMPT.encode(), None, None)])[:-20], FORM["content-type"]),  # cut short
], ids=["missing-boundary", "part-without-headers", "part-without-name", "no-delimiter", "truncated"])
def test_hostile_forms_get_a_4xx(gw: Gateway, upstream: Upstream, body: bytes, content_type: str) -> None:
    r = httpx.post(f"{gw.url}/upload", content=body, headers={"content-type": content_type}, timeout=30)
    error_of(r, 400, "BAD_REQUEST")
    assert [x for x in records(upstream, "/record/upload") if x["complete"]] == []


def test_gateway_log_has_no_tracebacks(gw: Gateway) -> None:
    """Run last in this module: bad input above was answered, never a fault."""
    assert "Traceback" not in gw.output(), gw.output()[-3000:]
