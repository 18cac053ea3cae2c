"""One access-log line per request, JSON (or key=value text), written in batches.

What a line never holds: request headers (so no ``Authorization``, cookies or API keys),
the query string (tokens travel there too), or a user id in clear: the subject is
replaced by a keyed BLAKE2b hash. The upstream is logged without its query.

Lines gather in a buffer that is written with one ``os.write`` once it holds
``buffer_bytes`` or is ``flush_interval`` old, so a request costs one ``orjson.dumps``
and a ``bytearray`` append. Each write stays within PIPE_BUF when the buffer does, so
the lines of several workers sharing a pipe never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from observability.config import AccessLogConfig

if TYPE_CHECKING:
    from hotpath.context import RequestContext

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_HASH_CACHE_MAX = 4096


def _level_of(status: int) -> tuple[int, str]:
    if status >= 500:
        return 40, "error"
    if status >= 400:
        return 30, "warning"
    return 20, "info"


class _Clock:
    """ISO-8601 UTC timestamps; the seconds part is formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


class UserHasher:
    """Keyed hash of user ids, with a bounded cache of recent subjects."""

    __slots__ = ("_cache", "_key")

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")[:64]
        self._cache: dict[str, str] = {}

    def __call__(self, subject: str) -> str:
        hashed = self._cache.get(subject)
        if hashed is None:
            hashed = hashlib.blake2b(subject.encode("utf-8"), digest_size=12, key=self._key).hexdigest()
            if len(self._cache) >= _HASH_CACHE_MAX:
                self._cache.clear()
            self._cache[subject] = hashed
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
        "_clock",
        "_fd",
        "_fh",
        "_flusher",
        "_hash",
        "_interval",
        "_limit",
        "_min_level",
        "_output",
        "_text",
        "dropped",
    )

    def __init__(self, config: AccessLogConfig) -> None:
        self._min_level = LEVELS[config.level]
        self._text = config.format == "text"
        self._limit = config.buffer_bytes
        self._interval = config.flush_interval
        self._hash = UserHasher(config.user_hash_key)
        self._clock = _Clock()
        self._buf = bytearray()
        self._fd: int | None = None
        self._fh: BinaryIO | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._output = config.output
        self.dropped = 0

    def open(self) -> None:
        """Open the output (in the worker, after the fork)."""
        if self._fd is None:
            self._fd, self._fh = _open(self._output)

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
        self.close()

    def close(self) -> None:
        """Write what is buffered and close a file output."""
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._fd = None

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def record(self, ctx: RequestContext, duration: float, now: float) -> dict[str, Any]:
        """The line's fields; public so tests and other sinks can see exactly what is logged."""
        status = ctx.status
        _, level = _level_of(status)
        route = ctx.route
        identity = ctx.identity
        upstream = ctx.upstream_url
        if upstream is not None:
            cut = upstream.find("?")
            if cut >= 0:
                upstream = upstream[:cut]
        return {
            "ts": self._clock.iso(now),
            "level": level,
            "msg": "access",
            "request_id": ctx.request_id,
            "correlation_id": ctx.correlation_id,
            "trace_id": ctx.trace_id,
            "user": self._hash(identity.subject) if identity is not None else None,
            "client_ip": ctx.client_ip,
            "method": ctx.method,
            "path": ctx.path,
            "route": route.name if route is not None else None,
            "status": status,
            "duration_ms": round(duration * 1000.0, 3),
            "upstream": upstream,
            "upstream_ms": round(ctx.upstream_ms, 3) if ctx.upstream_ms is not None else None,
            "bytes_in": ctx.bytes_in,
            "bytes_out": ctx.bytes_out,
            "rate_limit": ctx.rate_limit_outcome,
            "breaker": ctx.breaker_outcome,
            "cache": ctx.cache_status,
        }

    def write(self, ctx: RequestContext, duration: float) -> None:
        if _level_of(ctx.status)[0] < self._min_level:
            return
        fields = self.record(ctx, duration, time.time())
        line = _text_line(fields) if self._text else orjson.dumps(fields) + b"\n"
        buf = self._buf
        if buf and len(buf) + len(line) > self._limit:
            self.flush()
        buf += line
        if len(buf) >= self._limit:
            self.flush()

    def flush(self) -> None:
        buf = self._buf
        if not buf:
            return
        if self._fd is None:
            self.open()
        data = bytes(buf)
        buf.clear()
        try:
            view = memoryview(data)
            while view:
                assert self._fd is not None
                written = os.write(self._fd, view)
                view = view[written:]
        except BlockingIOError:
            self.dropped += 1  # a non-blocking output that is full: never stall the loop
        except OSError:
            self.dropped += 1


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
