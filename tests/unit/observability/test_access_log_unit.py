"""Access-log lines built in process: fields, levels, hashing, batching."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from hotpath.context import Identity, RequestContext
from observability.access_log import AccessLog, UserHasher
from observability.config import AccessLogConfig


def _ctx(status: int = 200) -> RequestContext:
    ctx = RequestContext({}, None, "GET", "/api/x", b"token=abc", [(b"authorization", b"Bearer t")], "10.0.0.1",
                         "rid1", "cid1", 0.0)
    ctx.status = status
    ctx.identity = Identity("alice", "free")
    ctx.upstream_url = "http://10.0.0.9:8000/x?token=abc"
    ctx.upstream_ms = 1.5
    return ctx


def test_user_hash_is_keyed_and_stable() -> None:
    a, b = UserHasher("k1"), UserHasher("k2")
    assert a("alice") == a("alice") != b("alice")
    assert "alice" not in a("alice")


def test_record_fields_and_no_query(tmp_path: Path) -> None:
    log = AccessLog(AccessLogConfig(output=str(tmp_path / "a.log")))
    fields = log.record(_ctx(), 0.0123, 1_700_000_000.5)
    assert fields["ts"] == "2023-11-14T22:13:20.500Z"
    assert fields["upstream"] == "http://10.0.0.9:8000/x"
    assert fields["user"] == UserHasher("gatehouse")("alice")
    assert fields["duration_ms"] == 12.3 and fields["level"] == "info"


def test_lines_batch_and_threshold(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out), buffer_bytes=4096, level="warning"))
    log.open()
    log.write(_ctx(200), 0.001)  # below the threshold
    log.write(_ctx(404), 0.001)
    log.write(_ctx(503), 0.001)
    assert out.read_bytes() == b""  # still buffered
    log.close()
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [(x["status"], x["level"]) for x in lines] == [(404, "warning"), (503, "error")]
    assert b"Bearer" not in out.read_bytes() and b"abc" not in out.read_bytes()
    assert os.path.getsize(out) > 0
