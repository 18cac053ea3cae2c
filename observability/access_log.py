"""One access-log line per request, JSON (or key=value text), written in batches.

What a line never holds: request headers (so no ``Authorization``, cookies or API keys),
the query string (tokens travel there too), or a user id in clear: the subject is
replaced by a keyed BLAKE2b hash. The upstream is logged without its query.

A request costs one ``AccessLine`` struct, encoded by msgspec straight into the buffer
(``observability.access_line``): the timestamp is reformatted at most once per millisecond
and user hashes are cached. Lines gather in a buffer until it holds ``buffer_bytes`` or is
``flush_interval`` old. To a pipe (a container's stdout) the batch then goes out as
back-to-back writes of whole lines, each within PIPE_BUF (4096 bytes) and so atomic: every
line reaches the pipe whole, and lines of several workers never interleave. A regular file
takes the batch in one write. Writes go through ``observability.line_writer``: a blocked
output fills its bounded queue, after which lines are dropped and counted
(``gatehouse_access_log_dropped_lines_total``), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import orjson

from hotpath.bounded import remember
from observability import metrics
from observability.access_line import ENCODER, AccessLine, as_dict
from observability.config import AccessLogConfig
from observability.line_writer import LineWriter

if TYPE_CHECKING:
    from hotpath.context import RequestContext

LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40}
DROP_REASONS: Final = ("queue_full", "write_error", "shutdown")
# Longest wait at shutdown for a slow output to take the last lines.
CLOSE_TIMEOUT: Final = 2.0
# Largest write to a pipe: a write within PIPE_BUF is atomic, so lines of several workers
# sharing the pipe never interleave.
PIPE_WRITE_BYTES: Final = 4096
# Batch size a regular file is raised to (within half of max_queued_bytes). Every write to
# a file goes through the writer thread (files refuse RWF_NOWAIT), and the hand-off's GIL
# switches cost per batch, so larger batches cost less per line. A write to a regular file
# lands whole at any size, so the file takes each batch in one write.
FILE_CHUNK_BYTES: Final = 65_536
_HASH_CACHE_MAX: Final = 4096
# Final: compiled code reads it from a static; a plain module global is a dict lookup per use.
_ENCODER: Final = ENCODER
_AccessLine: Final = AccessLine


def _level_of(status: int) -> tuple[int, str]:
    if status >= 500:
        return 40, "error"
    if status >= 400:
        return 30, "warning"
    return 20, "info"


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds, formatted at most once per millisecond.

    Under load many lines share a millisecond, so most calls cost one multiplication and
    a comparison; the date and time of day are formatted once per second.
    """

    __slots__ = ("_ms", "_prefix", "_second", "_text")

    def __init__(self) -> None:
        self._ms = -1
        self._second = -1
        self._prefix = ""
        self._text = ""

    def iso(self, now: float) -> str:
        ms = int(now * 1000.0)
        if ms != self._ms:
            self._ms = ms
            second, frac = divmod(ms, 1000)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            # zfill, not a format spec: mypyc compiles one into a str.format call.
            self._text = f"{self._prefix}.{str(frac).zfill(3)}Z"
        return self._text


class UserHasher:
    """Keyed hash of user ids, with a bounded cache of recent subjects."""

    __slots__ = ("_cache", "_key")

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")[:64]
        self._cache: dict[str, str] = {}

    def digest(self, subject: str) -> str:
        # A named method, not __call__: compiled code calls a native method directly, an
        # instance through the generic call protocol.
        hashed = self._cache.get(subject)
        if hashed is None:
            hashed = remember(self._cache, subject,
                              hashlib.blake2b(subject.encode("utf-8"), digest_size=12, key=self._key).hexdigest(),
                              _HASH_CACHE_MAX)
        return hashed


def _open(output: str) -> tuple[int, BinaryIO | None]:
    if output == "stdout":
        return sys.stdout.fileno(), None
    if output == "stderr":
        return sys.stderr.fileno(), None
    fh = open(output, "ab", buffering=0)  # noqa: SIM115 - kept open for the worker's life
    return fh.fileno(), fh


class AccessLog:
    __slots__ = (
        "_buf",
        "_buf_lines",
        "_clock",
        "_drop_children",
        "_fd",
        "_fh",
        "_flusher",
        "_hash",
        "_interval",
        "_limit",
        "_max_queued",
        "_min_level",
        "_output",
        "_split",
        "_stopped",
        "_text",
        "_writer",
        "dropped",
    )

    def __init__(self, config: AccessLogConfig, *, dropped_family: Any = None) -> None:
        self._min_level = LEVELS[config.level]
        self._text = config.format == "text"
        self._limit = config.buffer_bytes
        self._split = True  # writes of at most PIPE_WRITE_BYTES; a regular file takes whole batches
        self._interval = config.flush_interval
        self._max_queued = config.max_queued_bytes
        self._hash = UserHasher(config.user_hash_key)
        self._clock = _Clock()
        self._buf = bytearray()
        self._buf_lines = 0
        self._fd: int | None = None
        self._fh: BinaryIO | None = None
        self._writer: LineWriter | None = None
        self._stopped = False
        self._flusher: asyncio.Task[None] | None = None
        self._output = config.output
        family = dropped_family if dropped_family is not None else metrics.ACCESS_LOG_DROPPED
        self._drop_children: dict[str, Any] = {reason: family.labels(reason) for reason in DROP_REASONS}
        self.dropped = 0  # lines lost, whatever the reason (also in the metric)

    def open(self) -> None:
        """Open the output and start its writer thread (in the worker, after the fork)."""
        if self._fd is None:
            self._fd, self._fh = _open(self._output)
            if stat.S_ISREG(os.fstat(self._fd).st_mode) and self._limit > 0:
                self._split = False
                # A batch is one write here, and the writer refuses a chunk larger than its
                # queue: keep room for one batch writing while the next one waits.
                self._limit = min(max(self._limit, FILE_CHUNK_BYTES), self._max_queued // 2)
        if self._writer is None:
            self._writer = LineWriter(self._fd, self._max_queued, self._count_drop)

    async def start(self) -> None:
        self.open()
        if self._limit > 0:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self.flush()
        writer = self._writer
        # Waiting for the writer thread to drain happens off the event loop; the buffer
        # stays the loop's alone (lines logged meanwhile are refused by the closing writer
        # and counted as lost at shutdown).
        drained = await asyncio.to_thread(writer.close, CLOSE_TIMEOUT) if writer is not None else True
        self.flush()
        self._finish(drained)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is buffered (waiting at most ``timeout`` for the output) and close a file."""
        self.flush()
        writer = self._writer
        self._finish(writer.close(timeout) if writer is not None else True)

    def _finish(self, drained: bool) -> None:
        self._writer = None
        self._stopped = True
        if self._fh is not None and drained:  # never close a descriptor a stuck write still holds
            self._fh.close()
        self._fh = None
        self._fd = None

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def _count_drop(self, reason: str, lines: int) -> None:
        # Called on the loop (queue full) and on the writer thread (write errors); a lost
        # update of this plain int under a race is acceptable, the metric is exact.
        self.dropped += lines
        self._drop_children[reason].inc(lines)

    def record(self, ctx: RequestContext, duration: float, now: float) -> dict[str, Any]:
        """The line's fields; public so tests and other sinks can see exactly what is logged."""
        return as_dict(self._line(ctx, duration, now, _level_of(ctx.status)[1]))

    def _line(self, ctx: RequestContext, duration: float, now: float, level: str) -> AccessLine:
        route = ctx.route
        identity = ctx.identity
        upstream = ctx.upstream_url
        if upstream is not None:
            cut = upstream.find("?")
            if cut >= 0:
                upstream = upstream[:cut]
        upstream_ms = ctx.upstream_ms
        outcomes = ctx.outcomes
        # Integer rounding: round(x, 3) is a builtin call where this is arithmetic, and
        # n / 1000 prints as exactly three decimals at most. int(x + 0.5) (both are never negative), not round(x):
        # compiled, int() of a float is a C conversion and round() a call to the builtin.
        return _AccessLine(
            self._clock.iso(now),
            level,
            "access",
            ctx.request_id,
            ctx.correlation_id,
            ctx.trace_id,
            self._hash.digest(identity.subject) if identity is not None else None,
            ctx.client_ip,
            ctx.method,
            ctx.path,
            route.name if route is not None else None,
            ctx.status,
            int(duration * 1_000_000.0 + 0.5) / 1000,
            upstream,
            int(upstream_ms * 1000.0 + 0.5) / 1000 if upstream_ms is not None else None,
            ctx.bytes_in,
            ctx.bytes_out,
            outcomes.get("rate_limit") if outcomes is not None else None,
            outcomes.get("breaker") if outcomes is not None else None,
            outcomes.get("cache") if outcomes is not None else None,
        )

    def write(self, ctx: RequestContext, duration: float) -> None:
        status = ctx.status
        if status < 400:
            level = "info"
            if self._min_level > 20:
                return
        elif status < 500:
            level = "warning"
            if self._min_level > 30:
                return
        else:
            level = "error"
        line = self._line(ctx, duration, time.time(), level)
        buf = self._buf
        mark = len(buf)
        if self._text:
            buf += _text_line(as_dict(line))
        else:
            try:
                _ENCODER.encode_into(line, buf, -1)
            except Exception:
                del buf[mark:]  # msgspec leaves what it had written before the failure
                raise
            buf.append(10)  # "\n"
        self._buf_lines += 1
        if len(buf) >= self._limit:
            if mark and len(buf) > self._limit:
                # The new line would overflow the batch: the batch goes without it.
                self._hand_off(bytes(buf[:mark]), self._buf_lines - 1)
                del buf[:mark]
                self._buf_lines = 1
            if len(buf) >= self._limit:
                self.flush()

    def flush(self) -> None:
        """Hand the buffered lines to the writer thread; never waits for the output."""
        buf = self._buf
        if not buf:
            return
        chunk, lines = bytes(buf), self._buf_lines
        buf.clear()
        self._buf_lines = 0
        self._hand_off(chunk, lines)

    def _hand_off(self, chunk: bytes, lines: int) -> None:
        if self._writer is None:
            if self._stopped:  # a line logged after the log was closed
                self._count_drop("shutdown", lines)
                return
            self.open()
        assert self._writer is not None
        if not self._split or len(chunk) <= PIPE_WRITE_BYTES:
            self._writer.submit(chunk, lines)
            return
        # Back-to-back writes: a pipe's reader usually wakes once for several of them, which
        # costs less than flushing every 4 KiB.
        submit = self._writer.submit
        end = len(chunk)
        start = 0
        while start < end:
            stop = start + PIPE_WRITE_BYTES
            if stop < end:
                cut = chunk.rfind(b"\n", start, stop)
                # A line longer than PIPE_BUF cannot be atomic: it goes out whole, alone.
                if cut >= start:
                    stop = cut + 1
                else:
                    nl = chunk.find(b"\n", stop)
                    stop = nl + 1 if nl >= 0 else end
            piece = chunk[start:stop]
            submit(piece, piece.count(b"\n"))
            start = stop


def _text_line(fields: dict[str, Any]) -> bytes:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if isinstance(value, str) and (not text or any(c in text for c in ' "=\n\\')):
            text = orjson.dumps(text).decode()
        parts.append(f"{key}={text}")
    return (" ".join(parts) + "\n").encode("utf-8", "replace")
