"""Access-log lines built in process: fields, levels, hashing, batching."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from hotpath.context import Identity, RequestContext
from observability.access_log import AccessLog, UserHasher
from observability.config import AccessLogConfig
from tests.support.requests import make_ctx


def _ctx(status: int = 200) -> RequestContext:
    ctx = make_ctx("GET", "/api/x", query=b"token=abc", headers=[(b"authorization", b"Bearer t")], ip="10.0.0.1",
                   request_id="rid1", correlation_id="cid1", started=0.0)
    ctx.status = status
    ctx.identity = Identity("alice", "free")
    ctx.upstream_url = "http://10.0.0.9:8000/x?token=abc"
    ctx.upstream_ms = 1.5
    return ctx


def test_user_hash_is_keyed_and_stable() -> None:
    a, b = UserHasher("k1"), UserHasher("k2")
    assert a.digest("alice") == a.digest("alice") != b.digest("alice")
    assert "alice" not in a.digest("alice")


def test_record_fields_and_no_query(tmp_path: Path) -> None:
    log = AccessLog(AccessLogConfig(output=str(tmp_path / "a.log")))
    fields = log.record(_ctx(), 0.0123, 1_700_000_000.5)
    assert fields["ts"] == "2023-11-14T22:13:20.500Z"
    assert fields["upstream"] == "http://10.0.0.9:8000/x"
    assert fields["user"] == UserHasher("gatehouse").digest("alice")
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


def test_a_regular_file_takes_larger_chunks_than_a_pipe(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out), buffer_bytes=4096))
    log.open()
    line = len(orjson.dumps(log.record(_ctx(), 0.001, time.time()))) + 1
    n = 3 * 4096 // line + 1  # three pipe-sized chunks' worth
    for _ in range(n):
        log.write(_ctx(), 0.001)
    time.sleep(0.3)  # time enough for the writer thread to write any chunk it was handed
    assert out.read_bytes() == b""  # a file gathers up to FILE_CHUNK_BYTES
    log.close()
    assert len(out.read_bytes().splitlines()) == n

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    piped = AccessLog(AccessLogConfig(output=str(fifo), buffer_bytes=4096))
    piped.open()
    for _ in range(n):
        piped.write(_ctx(), 0.001)
    first = b""
    deadline = time.monotonic() + 10
    while not first:  # a pipe gets 4 KiB chunks as they fill (maybe through the writer thread)
        assert time.monotonic() < deadline, "nothing reached the pipe before close"
        with contextlib.suppress(BlockingIOError):
            first = os.read(reader, 1 << 20)
        time.sleep(0.001)
    assert 0 < len(first) <= 3 * 4096 and first.endswith(b"\n")
    piped.close()
    os.close(reader)


def test_a_file_batch_always_fits_the_writers_queue(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out), max_queued_bytes=16_384))
    log.open()
    writer = log._writer
    assert writer is not None
    for _ in range(100):  # about 45 KB: more than the queue holds
        log.write(_ctx(), 0.001)
        deadline = time.monotonic() + 10
        while writer.queued_bytes:  # an output that keeps up: nothing may be dropped
            assert time.monotonic() < deadline
            time.sleep(0.001)
    log.close()
    assert len(out.read_bytes().splitlines()) == 100
    assert log.dropped == 0


class _Recorder:
    """Stands in for the writer thread to show the writes a batch becomes."""

    def __init__(self) -> None:
        self.writes: list[tuple[bytes, int]] = []

    def submit(self, chunk: bytes, lines: int) -> bool:
        self.writes.append((chunk, lines))
        return True

    def close(self, timeout: float) -> bool:
        return True


def test_a_batch_reaches_a_pipe_as_whole_line_writes_within_pipe_buf(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    log = AccessLog(AccessLogConfig(output=str(fifo), buffer_bytes=32_768))
    log.open()
    log._writer.close(1.0)  # type: ignore[union-attr]
    recorder = _Recorder()
    log._writer = recorder  # type: ignore[assignment]
    long_line = _ctx()
    long_line.path = "/" + "p" * 5000  # one line over PIPE_BUF: written alone, whole
    sent = 0
    while sum(len(c) for c, _ in recorder.writes) == 0:
        log.write(long_line if sent == 20 else _ctx(), 0.001)
        sent += 1
    assert 5 < len(recorder.writes) <= 12  # the first 32 KiB batch, as back-to-back writes
    log.flush()
    data = b"".join(c for c, _ in recorder.writes)
    assert data.count(b"\n") == sent == sum(n for _, n in recorder.writes)
    paths = [orjson.loads(line)["path"] for line in data.splitlines()]
    assert paths == ["/api/x"] * 20 + [long_line.path] + ["/api/x"] * (sent - 21)  # whole, in order
    for chunk, lines in recorder.writes:
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == lines
        assert len(chunk) <= 4096 or lines == 1
    assert any(len(c) > 4096 for c, _ in recorder.writes)  # the long line, alone
    log.close()
    os.close(reader)


def test_a_file_batch_never_exceeds_its_limit(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out), max_queued_bytes=16_384))
    log.open()
    limit = log._limit
    log._writer.close(1.0)  # type: ignore[union-attr]
    recorder = _Recorder()
    log._writer = recorder  # type: ignore[assignment]
    sent = 0
    while len(recorder.writes) < 3:
        ctx = _ctx()
        ctx.path = f"/api/{sent}"
        log.write(ctx, 0.001)
        sent += 1
    log.flush()
    for chunk, lines in recorder.writes:
        # The line that would overflow a batch starts the next one.
        assert len(chunk) <= limit and chunk.count(b"\n") == lines
    data = b"".join(c for c, _ in recorder.writes)
    assert [orjson.loads(line)["path"] for line in data.splitlines()] == [f"/api/{i}" for i in range(sent)]
    assert any(len(c) > limit - 500 for c, _ in recorder.writes[:-1])  # batches did fill up
    log.close()


def test_a_line_that_cannot_be_encoded_leaves_the_batch_intact(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out)))
    log.open()
    log.write(_ctx(), 0.001)
    bad = _ctx()
    bad.path = "/api/\udcff"  # a lone surrogate has no UTF-8 form
    with pytest.raises(UnicodeEncodeError):
        log.write(bad, 0.001)
    log.write(_ctx(404), 0.001)
    log.close()
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["status"] for x in lines] == [200, 404]


def test_timestamps_are_exact_across_millisecond_and_second_boundaries(tmp_path: Path) -> None:
    log = AccessLog(AccessLogConfig(output=str(tmp_path / "a.log")))
    stamps = [log.record(_ctx(), 0.0, now)["ts"] for now in (1_700_000_000.0004, 1_700_000_000.0009,
                                                                1_700_000_000.9991, 1_700_000_001.0001)]
    assert stamps == ["2023-11-14T22:13:20.000Z", "2023-11-14T22:13:20.000Z", "2023-11-14T22:13:20.999Z",
                      "2023-11-14T22:13:21.000Z"]


def test_durations_print_as_milliseconds_with_three_decimals(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    log = AccessLog(AccessLogConfig(output=str(out), buffer_bytes=0))
    ctx = _ctx()
    ctx.upstream_ms = 0.1 + 0.2  # 0.30000000000000004
    log.write(ctx, 0.0123456789)
    log.close()
    raw = out.read_bytes()
    assert b'"duration_ms":12.346,' in raw and b'"upstream_ms":0.3,' in raw


def test_a_blocked_output_drops_and_counts_lines_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # present, but reads nothing for now
    family = Counter("gatehouse_access_log_dropped_lines", "d", ("reason",), registry=CollectorRegistry())
    log = AccessLog(AccessLogConfig(output=str(fifo), max_queued_bytes=8192), dropped_family=family)
    log.open()
    total = 3000  # about 1.3 MB of lines: far past the pipe's 64 kB and the 8 kB queue

    def produce() -> None:
        for _ in range(total):
            log.write(_ctx(), 0.001)
        log.flush()

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(30)
    assert not producer.is_alive(), "the access log blocked its caller behind a stalled output"
    dropped = family.labels("queue_full")._value.get()
    assert 0 < dropped == log.dropped < total
    received = bytearray()
    closer = threading.Thread(target=log.close, args=(10.0,))
    closer.start()
    deadline = time.monotonic() + 30
    while closer.is_alive() or bytes(received[-1:]) not in (b"", b"\n"):
        assert time.monotonic() < deadline, "the writer never finished"
        try:
            received += os.read(reader, 65536)
        except BlockingIOError:
            closer.join(0.01)
    with contextlib.suppress(BlockingIOError):
        received += os.read(reader, 1 << 20)
    os.close(reader)
    lines = [orjson.loads(line) for line in received.splitlines()]
    assert len(lines) + dropped == total  # every line either arrived whole or was counted
    assert all(line["request_id"] == "rid1" for line in lines)


async def test_stop_writes_everything_and_counts_lines_logged_after_it(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    family = Counter("gatehouse_access_log_dropped_lines", "d", ("reason",), registry=CollectorRegistry())
    log = AccessLog(AccessLogConfig(output=str(out), flush_interval=60), dropped_family=family)
    await log.start()
    for _ in range(5):
        log.write(_ctx(), 0.001)
    await log.stop()
    assert len(out.read_bytes().splitlines()) == 5
    log.write(_ctx(), 0.001)  # a request finishing after the worker's log closed
    log.flush()
    assert family.labels("shutdown")._value.get() == 1 == log.dropped
    assert len(out.read_bytes().splitlines()) == 5
