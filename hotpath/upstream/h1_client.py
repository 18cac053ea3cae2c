"""``UpstreamClient`` over HTTP/1.1 on the worker's own event loop.

Why not a library: every client with its own runtime (pyreqwest's Tokio threads) pays two
thread hand-offs and GIL round trips per request, and the pure-asyncio ones (aiohttp, httpx)
spend tens of microseconds of Python per request. This client is an asyncio ``Protocol``
per keep-alive connection, httptools (llhttp) parsing the responses and uvloop's C
transports doing the I/O, so a request costs one write and one read callback in the loop
that already runs the gateway.

What it does: keep-alive pools per origin (LIFO, bounded, idle timeout), connect / read /
total deadlines, streamed request bodies (chunked) and responses (chunks as they arrive,
with read backpressure), HEAD and 1xx handling, HTTPS through ``ssl``, and a transparent
second try when a reused keep-alive connection turns out to have been closed by the
upstream before it answered a byte (the race every HTTP/1.1 pool has).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import AsyncIterable
from types import TracebackType
from typing import Final

import httptools

from hotpath.upstream.client import (
    Body,
    UpstreamBodyError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from hotpath.upstream.config import PoolConfig, Timeouts

# Response bytes buffered for a slow reader before the socket stops being read.
READ_HIGH_WATER: Final = 256 * 1024
# How often running exchanges' deadlines are checked (their resolution).
DEADLINE_TICK: Final = 0.05
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_EXPECTS_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_HTTP11: Final = b" HTTP/1.1\r\n"
_CRLF: Final = b"\r\n"
_SEP: Final = b": "
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_LENGTH: Final = b"content-length: "
_LAST_CHUNK: Final = b"0\r\n\r\n"
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})


class UpstreamProtocolError(UpstreamConnectError):
    """The upstream sent something that is not an HTTP/1.1 response."""

    def __init__(self, message: str) -> None:
        super().__init__(message, before_send=False)


class _Response:
    """One response as the proxy sees it: status, headers, then chunks as they arrive."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_waiter", "buffered", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._done = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read_chunk(self) -> bytes | None:
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft() if len(chunks) == 1 else _drain(chunks)
                self.buffered -= len(chunk)
                conn = self._conn
                if conn is not None and conn.reading_paused and self.buffered < READ_HIGH_WATER // 2:
                    conn.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    # Called by the connection.
    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.buffered += len(chunk)
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._conn = None
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        if not self._done:
            self._error = error
            self._conn = None
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _drain(chunks: collections.deque[bytes]) -> bytes:
    data = b"".join(chunks)
    chunks.clear()
    return data


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    __slots__ = (
        "_drain_waiter",
        "_head_waiter",
        "_parser",
        "_pool",
        "_write_paused",
        "closed",
        "counted",
        "got_bytes",
        "idle_since",
        "keep_alive",
        "last_read",
        "reading_paused",
        "request_done",
        "response",
        "skip_body",
        "transport",
        "until_close",
    )

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.response: _Response | None = None
        self._head_waiter: asyncio.Future[_Response] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self.reading_paused = False
        self.closed = False
        self.counted = False  # holds one of the pool's slots
        self.got_bytes = False
        self.keep_alive = True
        self.request_done = True
        self.skip_body = False
        self.until_close = False
        self.idle_since = 0.0
        self.last_read = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            # Bytes on an idle connection: the upstream is out of step; never reuse it.
            self.abort()
            return
        self.got_bytes = True
        self.last_read = self._pool.clock()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("upstream switched protocols, which this route does not proxy"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"malformed upstream response: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.response is not None:
            if self.until_close and self._head_waiter is None and exc is None:
                # A body without Content-Length or chunking ends at the close (a clean
                # one: a reset cuts it short).
                response, self.response = self.response, None
                response.finish()
            else:
                self._fail(UpstreamConnectError("upstream closed the connection", before_send=False))
        self._pool.forget(self)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(UpstreamConnectError("upstream closed the connection", before_send=False))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.response is None:
            # A response after the exchange's own (in the same read): out of step.
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None:
            response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx interim responses (100 Continue, 103 Early Hints) are not relayed.
            response.headers.clear()
            return
        response.status = status
        self.keep_alive = self._parser.should_keep_alive()
        if not self.skip_body:
            self.until_close = status not in (204, 304) and not any(k in _FRAMING for k, _ in response.headers)
        head = self._head_waiter
        self._head_waiter = None
        if head is not None and not head.done():
            head.set_result(response)
        if self.skip_body:
            # HEAD: llhttp would wait for the declared body; the exchange is complete, and
            # the next response gets a fresh parser.
            self._parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response.feed(body)
            if response.buffered > READ_HIGH_WATER and not self.reading_paused and self.transport is not None:
                self.reading_paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or response.status == 0:
            return  # the end of a 1xx interim response
        self.response = None
        self.until_close = False
        response.finish()
        if self.reading_paused:
            # The last chunk crossed the high-water mark; the body is now the response's,
            # and an idle connection must be read (to see the upstream close it).
            self.resume_reading()
        self._pool.release(self, self.keep_alive and self.request_done)

    # Used by the exchange.
    def begin(self, head_waiter: asyncio.Future[_Response], skip_body: bool) -> _Response:
        self.response = response = _Response(self)
        self._head_waiter = head_waiter
        self.skip_body = skip_body
        self.got_bytes = False
        self.keep_alive = True
        self.until_close = False
        self.last_read = self._pool.clock()
        return response

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self.closed:
            raise UpstreamConnectError("upstream closed the connection", before_send=False)

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.last_read = self._pool.clock()  # a slow reader's pause is not upstream silence
            self.transport.resume_reading()

    def _fail(self, error: UpstreamError) -> None:
        head = self._head_waiter
        self._head_waiter = None
        if head is not None and not head.done():
            head.set_exception(error)
        response, self.response = self.response, None
        if response is not None:
            response.fail(error)
        self.abort()

    def fail_exchange(self, error: UpstreamError) -> None:
        """Ends the exchange from outside (a deadline, a failed upload)."""
        if self.response is not None or self._head_waiter is not None:
            self._fail(error)
        else:
            self.abort()

    def abort(self) -> None:
        self.closed = True  # at once: connection_lost comes a loop iteration later
        transport = self.transport
        if transport is not None:
            transport.abort()


class _Pool:
    """Keep-alive connections to one origin, for one worker."""

    __slots__ = (
        "_closed",
        "_connect_timeout",
        "_idle",
        "_idle_timeout",
        "_max_connections",
        "_max_idle",
        "_sweep",
        "_waiters",
        "clock",
        "host",
        "host_header",
        "loop",
        "port",
        "server_hostname",
        "size",
        "ssl",
    )

    def __init__(
        self, *, host: str, port: int, tls: ssl.SSLContext | None, timeouts: Timeouts, pool: PoolConfig
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = tls
        self.server_hostname = host if tls is not None else None
        default_port = 443 if tls is not None else 80
        authority = f"[{host}]" if ":" in host else host
        if port != default_port:
            authority = f"{authority}:{port}"
        self.host_header = b"host: " + authority.encode("idna") + _CRLF
        self._connect_timeout = timeouts.connect
        self._idle_timeout = pool.idle_timeout
        self._max_idle = pool.max_idle_per_host
        self._max_connections = pool.max_connections
        self._idle: list[_Connection] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self.size = 0
        self._closed = False
        # The pool's connections belong to the loop it was made in; so do its futures.
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time

    def take_idle(self) -> _Connection | None:
        """An idle keep-alive connection, if there is one (no await: the common case)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def open(self, deadline: float) -> tuple[_Connection, bool]:
        """When ``take_idle`` had none: wait for a slot under ``max_connections`` (an idle
        connection may come back meanwhile), or connect. Says whether it was reused."""
        limit = self._max_connections
        while limit is not None and self.size >= limit:
            await self._wait_for_slot(deadline)
            conn = self.take_idle()
            if conn is not None:
                return conn, True
        return await self._connect(deadline), False

    async def _wait_for_slot(self, deadline: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                # Woken, then cancelled before taking the slot: the wake-up goes on.
                self._wake_waiter()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("no free upstream connection before the deadline", phase="connect") from None
            raise

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self.size += 1
        conn.counted = True
        timeout = min(self._connect_timeout, max(deadline - loop.time(), 0))
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
                )
        except TimeoutError:
            self.forget(conn)
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out", phase="connect") from None
        except (OSError, ssl.SSLError) as exc:
            self.forget(conn)
            message = f"connecting to {self.host}:{self.port} failed: {exc}"
            raise UpstreamConnectError(message, before_send=True) from exc
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable or conn.closed or self._closed or len(self._idle) >= self._max_idle:
            conn.abort()  # connection_lost calls forget(), which frees its slot
            return
        conn.idle_since = self.clock()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._idle_timeout, self._close_idle)
        self._wake_waiter()

    def forget(self, conn: _Connection) -> None:
        """A connection closed (or never opened): it leaves the pool, its slot freed once."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self.size -= 1
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_idle(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._idle_timeout
        for conn in [c for c in self._idle if c.idle_since <= cutoff]:
            conn.abort()
        if self._idle:
            oldest = min(c.idle_since for c in self._idle)
            self._sweep = loop.call_later(max(oldest + self._idle_timeout - loop.time(), 0.01), self._close_idle)

    def close(self) -> None:
        self._closed = True  # exchanges still running close their connections when done
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._idle):
            conn.abort()


class _DeadlineWatch:
    """Connect-to-last-byte and silence deadlines of running exchanges, checked on one
    ticking timer per client: a request pays a dict insert and removal, not a timer of its
    own. Deadlines fire up to one tick late."""

    __slots__ = ("_active", "_timer")

    def __init__(self) -> None:
        self._active: dict[_Exchange, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, exchange: _Exchange) -> None:
        self._active[exchange] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DEADLINE_TICK, self._tick)

    def discard(self, exchange: _Exchange) -> None:
        self._active.pop(exchange, None)

    def _tick(self) -> None:
        self._timer = None
        if not self._active:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for exchange in list(self._active):
            exchange.check_deadlines(now)
        if self._active:
            self._timer = loop.call_later(DEADLINE_TICK, self._tick)


class _Exchange:
    """One request/response exchange as an async context manager.

    The exchange owns its connection only while ``conn.response is self._response``: the
    connection goes back to the pool the moment the last body byte is parsed (the chunks
    stay with the response), and may carry someone else's exchange by the time this one
    exits. Every late action checks that ownership first.
    """

    __slots__ = (
        "_body",
        "_conn",
        "_deadline",
        "_headers",
        "_method",
        "_pool",
        "_pump",
        "_read_timeout",
        "_response",
        "_target",
        "_timeout",
        "_watch",
    )

    def __init__(
        self,
        watch: _DeadlineWatch,
        pool: _Pool,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._method = method
        self._target = target
        self._headers = headers
        self._body = body
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._deadline = 0.0
        self._conn: _Connection | None = None
        self._response: _Response | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watch = watch

    async def __aenter__(self) -> _Response:
        loop = self._pool.loop
        now = loop.time()
        deadline = self._deadline = now + self._timeout
        head = self._head_bytes()
        body = self._body
        replayable = body is None or isinstance(body, bytes)
        while True:
            idle = self._pool.take_idle()
            conn, reused = (idle, True) if idle is not None else await self._pool.open(deadline)
            self._conn = conn
            head_waiter: asyncio.Future[_Response] = loop.create_future()
            self._response = conn.begin(head_waiter, self._method == "HEAD")
            self._watch.add(self)
            if body is None:
                conn.request_done = True
                conn.write(head)
            elif isinstance(body, bytes):
                conn.request_done = True
                conn.write(head + body)
            else:
                conn.request_done = False
                conn.write(head)
                self._pump = loop.create_task(self._send_body(conn, body))
            try:
                return await head_waiter
            except UpstreamConnectError as exc:
                # A reused connection the upstream had closed: most likely it never saw the
                # request, so an idempotent one goes once more on a fresh connection. Others
                # may have been acted on, and are the proxy's retry policy's to decide.
                if (
                    reused
                    and replayable
                    and self._method in _IDEMPOTENT
                    and not conn.got_bytes
                    and not isinstance(exc, UpstreamProtocolError)
                ):
                    continue
                self._abandon()
                raise
            except BaseException:
                self._abandon()
                raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._abandon()

    def _owns(self, conn: _Connection | None) -> bool:
        return conn is not None and conn.response is not None and conn.response is self._response

    def _abandon(self) -> None:
        """Ends the exchange: a connection still mid-message cannot be reused."""
        self._watch.discard(self)
        pump = self._pump
        if pump is not None and not pump.done():
            pump.cancel()
        conn = self._conn
        self._conn = None
        if self._owns(conn):
            assert conn is not None
            conn.fail_exchange(UpstreamConnectError("exchange abandoned", before_send=False))

    def check_deadlines(self, now: float) -> None:
        conn = self._conn
        if not self._owns(conn):
            self._watch.discard(self)
            return
        assert conn is not None
        if now >= self._deadline:
            conn.fail_exchange(UpstreamTimeout("upstream exchange exceeded its deadline", phase="total"))
            return
        # Silence counts from the end of the upload: an upstream may answer only after it.
        if now >= conn.last_read + self._read_timeout and conn.request_done and not conn.reading_paused:
            conn.fail_exchange(UpstreamTimeout("upstream sent nothing within the read timeout", phase="read"))

    def _head_bytes(self) -> bytes:
        method = self._method
        headers = self._headers
        parts = [method.encode("ascii"), b" ", self._target.encode("latin-1"), _HTTP11, self._pool.host_header]
        for k, v in headers:
            # Four appends, not `parts += (k, _SEP, v, _CRLF)`: compiled, that builds a tuple
            # and extends through the generic sequence protocol (about 20% slower in all).
            parts.append(k)
            parts.append(_SEP)
            parts.append(v)
            parts.append(_CRLF)
        body = self._body
        if body is None:
            if method in _EXPECTS_BODY:
                parts.append(b"content-length: 0\r\n")
        elif isinstance(body, bytes):
            parts += (_LENGTH, str(len(body)).encode("ascii"), _CRLF)
        else:
            parts.append(_CHUNKED)
        parts.append(_CRLF)
        return b"".join(parts)

    async def _send_body(self, conn: _Connection, body: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in body:
                if chunk:
                    conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await conn.drain()
            conn.write(_LAST_CHUNK)
            conn.request_done = True
            conn.last_read = self._pool.clock()
        except UpstreamError as upstream_error:  # UpstreamBodyError from the client's side included
            if self._owns(conn):
                conn.fail_exchange(upstream_error)
        except Exception as other:  # the client's body iterator failed in some other way
            if self._owns(conn):
                conn.fail_exchange(UpstreamBodyError(other))


class H1UpstreamClient:
    """One client per service and worker; one pool per origin it is asked for."""

    def __init__(self, timeouts: Timeouts, pool: PoolConfig) -> None:
        self._timeouts = timeouts
        self._pool_config = pool
        self._read_timeout = timeouts.read
        self._watch = _DeadlineWatch()
        self._pools: dict[str, _Pool] = {}
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        return None

    def stream(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
    ) -> _Exchange:
        # The service's instance URL ends where the path starts: look its pool up by it.
        cut = url.find("/", url.find("//") + 2)
        origin, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = self._new_pool(origin)
        return _Exchange(self._watch, pool, method, target, headers, body, timeout, self._read_timeout)

    def _new_pool(self, origin: str) -> _Pool:
        from urllib.parse import urlsplit

        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamConnectError(f"unsupported upstream URL {origin!r}", before_send=True)
        tls = None
        if parts.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        port = parts.port or (443 if tls is not None else 80)
        return _Pool(host=parts.hostname, port=port, tls=tls, timeouts=self._timeouts, pool=self._pool_config)

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        # Aborted transports finish closing on the next loop iteration: let them, so none
        # is left half-closed when the worker's loop stops.
        await asyncio.sleep(0)

