"""The access-log writer thread: ordered whole chunks, bounded queue, drops counted, never blocking."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from observability.line_writer import LineWriter


class Drops:
    def __init__(self) -> None:
        self.lines: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, reason: str, lines: int) -> None:
        with self._lock:
            self.lines[reason] += lines


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # a test may have closed it already
            os.close(fd)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = bytearray()
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def _chunk(i: int) -> bytes:
    return b"".join(b'{"n":%d,"k":%d}\n' % (i, k) for k in range(10))


def test_chunks_arrive_whole_and_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    drops = Drops()
    writer = LineWriter(w, 1 << 20, drops)
    for i in range(20):
        assert writer.submit(_chunk(i), 10)
    assert writer.close(10)
    assert _read_all(r) == b"".join(_chunk(i) for i in range(20))
    assert not drops.lines
    assert writer.queued_bytes == 0


def test_a_blocked_output_never_blocks_the_caller_and_drops_are_counted(pipe: tuple[int, int]) -> None:
    r, w = pipe  # nobody reads r until the end: the pipe fills and the thread's write blocks
    drops = Drops()
    writer = LineWriter(w, 64 * 1024, drops)
    accepted = 0
    total = 2000  # chunks of about 170 bytes: 340 kB, far more than the pipe and the queue hold

    def produce() -> None:
        nonlocal accepted
        for i in range(total):
            accepted += writer.submit(_chunk(i), 10)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(30)
    assert not producer.is_alive(), "submit blocked behind a stalled output"
    assert 0 < accepted < total
    assert drops.lines["queue_full"] == (total - accepted) * 10
    assert writer.queued_bytes <= 64 * 1024
    # Drain the pipe while the writer finishes; every accepted line arrives complete.
    received = bytearray()
    done = threading.Event()

    def drain() -> None:
        while not done.is_set() or writer.queued_bytes:
            try:
                data = os.read(r, 65536)
            except BlockingIOError:
                done.wait(0.01)
                continue
            received.extend(data)

    os.set_blocking(r, False)
    reader = threading.Thread(target=drain)
    reader.start()
    assert writer.close(30)
    done.set()
    reader.join(30)
    received += _read_all(r)
    lines = received.splitlines()
    assert len(lines) == accepted * 10
    assert all(line.startswith(b'{"n":') and line.endswith(b"}") for line in lines)


def test_close_gives_up_on_a_blocked_output_and_counts_what_is_left(pipe: tuple[int, int]) -> None:
    _, w = pipe
    drops = Drops()
    writer = LineWriter(w, 1 << 20, drops)
    big = b"x" * 65535 + b"\n"  # one line that fills the pipe
    for _ in range(4):
        assert writer.submit(big, 1)
    assert not writer.close(0.3)
    # The thread holds one chunk in a blocked write; the ones behind it never left the queue.
    left = drops.lines["shutdown"]
    assert left >= 2
    assert not writer.submit(b"late\n", 1)  # closed: refused, counted
    assert drops.lines["shutdown"] == left + 1 and not drops.lines["queue_full"]


def test_a_failing_output_counts_write_errors(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)  # writes now fail with EPIPE (Python ignores SIGPIPE)
    drops = Drops()
    writer = LineWriter(w, 1 << 20, drops)
    for i in range(3):
        writer.submit(_chunk(i), 10)
    assert writer.close(10)
    assert drops.lines["write_error"] == 30


def test_a_pipe_with_room_is_written_from_the_caller_without_the_thread(pipe: tuple[int, int]) -> None:
    r, w = pipe
    drops = Drops()
    writer = LineWriter(w, 1 << 20, drops)
    for i in range(5):
        assert writer.submit(_chunk(i), 10)
    # Written before close(): nothing went through the thread's queue.
    assert _read_all(r) == b"".join(_chunk(i) for i in range(5))
    assert writer.direct_chunks == 5
    assert writer.close(10)
    assert not drops.lines


def test_a_full_pipe_hands_over_to_the_thread_and_order_holds(pipe: tuple[int, int]) -> None:
    r, w = pipe
    drops = Drops()
    writer = LineWriter(w, 1 << 22, drops)
    chunks = [_chunk(i) for i in range(3000)]  # about 500 kB: the 64 kB pipe fills
    for c in chunks:
        assert writer.submit(c, 10)
    assert writer.direct_chunks < len(chunks)
    got = bytearray()
    reader_done = threading.Event()

    def drain() -> None:
        while len(got) < sum(map(len, chunks)):
            got.extend(os.read(r, 65536))
        reader_done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert writer.close(20)
    assert reader_done.wait(20)
    assert bytes(got) == b"".join(chunks)
    assert not drops.lines


def test_a_regular_file_gets_every_chunk_in_order(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        writer = LineWriter(fd, 1 << 20, Drops())
        for i in range(3):
            assert writer.submit(_chunk(i), 10)
        assert writer.close(10)
    finally:
        os.close(fd)
    assert (tmp_path / "log").read_bytes() == b"".join(_chunk(i) for i in range(3))
