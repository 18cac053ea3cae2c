"""A writer thread that puts chunks of log lines on a file descriptor, never blocking its caller.

The event loop must never wait for an output: a container's stdout is a pipe, and when the
reader stalls (a log shipper restarting, a full node disk) a blocking ``write`` would stop
every request in the worker. Setting ``O_NONBLOCK`` on stdout is no answer either: the flag
belongs to the open file description, which the worker shares with its parent and siblings.

So the loop first tries a write that cannot block: ``pwritev2`` with ``RWF_NOWAIT``, which
Linux honours on a pipe (a container's stdout), refusing with EAGAIN instead of waiting
(checked on 6.18; a kernel that refuses the flag gets everything written by the thread).
Only when that is refused, or the output does not support it (a regular file on most
filesystems), or earlier chunks are still queued (order is kept), does the chunk go to
this thread, through a queue bounded in bytes. The thread costs a wake-up and GIL hand-offs
per chunk, so the common case never touches it. When the queue is full the chunk is
dropped and counted, never waited for.
Each chunk is written with one ``write`` call where the output allows, so a chunk within
PIPE_BUF (4096 bytes) reaches a pipe whole and lines of several workers never interleave.

Drops are reported through ``on_drop(reason, lines)``; reasons are ``queue_full``,
``write_error`` (the output failed: the chunk is lost) and ``shutdown`` (still queued when
``close`` gave up on a blocked output).
"""

from __future__ import annotations

import collections
import errno
import os
import select
import threading
from collections.abc import Callable

DropHandler = Callable[[str, int], None]


_NOWAIT = getattr(os, "RWF_NOWAIT", None)
# The output cannot take a non-blocking write at all: stop trying it.
_NOWAIT_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ESPIPE, errno.ENOSYS})


class LineWriter:
    __slots__ = (
        "_cond",
        "_direct",
        "_fd",
        "_max_bytes",
        "_on_drop",
        "_queue",
        "_queued",
        "_stopping",
        "_thread",
        "direct_chunks",
    )

    def __init__(self, fd: int, max_bytes: int, on_drop: DropHandler, *, name: str = "gatehouse-access-log") -> None:
        self._fd = fd
        self._direct = _NOWAIT is not None
        self.direct_chunks = 0  # written from the caller's thread without waiting
        self._max_bytes = max_bytes
        self._on_drop = on_drop
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self._queued = 0  # bytes in the queue and in the write being made
        self._stopping = False
        # A daemon, so an output blocked for good cannot keep the worker from exiting.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def submit(self, chunk: bytes, lines: int) -> bool:
        """Write or queue a chunk of ``lines`` lines; False (and counted) if full or closing."""
        if self._direct and not self._queued and not self._stopping:
            written = self._write_now(chunk, lines)
            if written is None:
                return False  # the output failed: counted as a write error
            if written == len(chunk):
                self.direct_chunks += 1
                return True
            chunk = chunk[written:]  # the rest waits its turn in the thread, in order
        refused: str | None = None
        with self._cond:
            if self._stopping:
                refused = "shutdown"
            elif self._queued + len(chunk) > self._max_bytes:
                refused = "queue_full"
            else:
                self._queue.append((chunk, lines))
                self._queued += len(chunk)
                self._cond.notify()
        if refused is not None:
            self._on_drop(refused, lines)
            return False
        return True

    def _write_now(self, chunk: bytes, lines: int) -> int | None:
        """Bytes written without blocking; None if the output failed (the chunk is lost)."""
        assert _NOWAIT is not None
        try:
            return os.pwritev(self._fd, (chunk,), -1, _NOWAIT)
        except BlockingIOError:
            return 0  # full for now: the thread waits for room
        except OSError as exc:
            if exc.errno in _NOWAIT_UNSUPPORTED:
                self._direct = False  # e.g. a regular file: the thread writes from now on
                return 0
            self._on_drop("write_error", lines)
            return None

    def close(self, timeout: float) -> bool:
        """Write what is queued, waiting at most ``timeout`` seconds; True if all was written."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._cond:  # the output is blocked: what never reached it is lost, and counted
            left = sum(lines for _, lines in self._queue)
            self._queue.clear()
        if left:
            self._on_drop("shutdown", left)
        return False

    def _run(self) -> None:
        queue = self._queue
        while True:
            with self._cond:
                while not queue and not self._stopping:
                    self._cond.wait()
                if not queue:
                    return  # stopping, and everything was written
                chunk, lines = queue.popleft()
            try:
                self._write_all(chunk)
            except OSError:
                self._on_drop("write_error", lines)
            finally:
                with self._cond:
                    self._queued -= len(chunk)

    def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                # Someone made the shared descriptor non-blocking: wait until it drains.
                select.select([], [self._fd], [], 1.0)
                continue
            view = view[written:]
