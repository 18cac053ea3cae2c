"""One keep-alive HTTP/1.1 connection to an upstream: an asyncio ``Protocol`` with httptools
(llhttp) parsing the responses, carrying one exchange at a time (``h1_client``), with read
backpressure for a slow reader."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Final

import httptools

from hotpath.upstream.client import (
    UpstreamConnectError,
    UpstreamError,
)

# Response bytes buffered for a slow reader before the socket stops being read.
READ_HIGH_WATER: Final = 256 * 1024
CRLF: Final = b"\r\n"
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})


class UpstreamProtocolError(UpstreamConnectError):
    """The upstream sent something that is not an HTTP/1.1 response."""

    def __init__(self, message: str) -> None:
        super().__init__(message, before_send=False)


class Response:
    """One response as the proxy sees it: status, headers, then chunks as they arrive."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_waiter", "buffered", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn: Connection | None = conn
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
                chunk = chunks.popleft() if len(chunks) == 1 else drain(chunks)
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


def drain(chunks: collections.deque[bytes]) -> bytes:
    data = b"".join(chunks)
    chunks.clear()
    return data


class ConnectionOwner:
    """What a connection asks of the pool it belongs to (``h1_pool.Pool``): a base class, so
    the pool knows its connections and a connection only this."""

    __slots__ = ("clock",)

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def release(self, conn: Connection, reusable: bool) -> None:
        """The connection's exchange is over; keep it for reuse if ``reusable``."""
        raise NotImplementedError

    def forget(self, conn: Connection) -> None:
        """The connection is closed: it no longer counts against the pool."""
        raise NotImplementedError


class Connection(asyncio.Protocol):
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

    def __init__(self, pool: ConnectionOwner) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self._head_waiter: asyncio.Future[Response] | None = None
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
    def begin(self, head_waiter: asyncio.Future[Response], skip_body: bool) -> Response:
        self.response = response = Response(self)
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


