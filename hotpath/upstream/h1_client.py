"""``UpstreamClient`` over HTTP/1.1 on the worker's own event loop.

Why not a library: every client with its own runtime (pyreqwest's Tokio threads) pays two
thread hand-offs and GIL round trips per request, and the pure-asyncio ones (aiohttp, httpx)
run far more Python per request (docs/performance.md has the measurement). This client is an asyncio ``Protocol``
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
import ssl
from collections.abc import AsyncIterable
from types import TracebackType
from typing import Final

from hotpath.upstream.client import (
    Body,
    UpstreamBodyError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from hotpath.upstream.config import PoolConfig, Timeouts
from hotpath.upstream.h1_connection import CRLF, Connection, Response, UpstreamProtocolError
from hotpath.upstream.h1_pool import Pool

# How often running exchanges' deadlines are checked (their resolution).
DEADLINE_TICK: Final = 0.05
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_EXPECTS_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_HTTP11: Final = b" HTTP/1.1\r\n"
_SEP: Final = b": "
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_LENGTH: Final = b"content-length: "
_LAST_CHUNK: Final = b"0\r\n\r\n"


class DeadlineWatch:
    """Connect-to-last-byte and silence deadlines of running exchanges, checked on one
    ticking timer per client: a request pays a dict insert and removal, not a timer of its
    own. Deadlines fire up to one tick late."""

    __slots__ = ("_active", "_timer")

    def __init__(self) -> None:
        self._active: dict[Exchange, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, exchange: Exchange) -> None:
        self._active[exchange] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DEADLINE_TICK, self._tick)

    def discard(self, exchange: Exchange) -> None:
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


class Exchange:
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
        watch: DeadlineWatch,
        pool: Pool,
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
        self._conn: Connection | None = None
        self._response: Response | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watch = watch

    async def __aenter__(self) -> Response:
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
            head_waiter: asyncio.Future[Response] = loop.create_future()
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

    def _owns(self, conn: Connection | None) -> bool:
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
            # Four appends, not `parts += (k, _SEP, v, CRLF)`: compiled, that builds a tuple
            # and extends through the generic sequence protocol.
            parts.append(k)
            parts.append(_SEP)
            parts.append(v)
            parts.append(CRLF)
        body = self._body
        if body is None:
            if method in _EXPECTS_BODY:
                parts.append(b"content-length: 0\r\n")
        elif isinstance(body, bytes):
            parts += (_LENGTH, str(len(body)).encode("ascii"), CRLF)
        else:
            parts.append(_CHUNKED)
        parts.append(CRLF)
        return b"".join(parts)

    async def _send_body(self, conn: Connection, body: AsyncIterable[bytes]) -> None:
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
        self._watch = DeadlineWatch()
        self._pools: dict[str, Pool] = {}
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
    ) -> Exchange:
        # The service's instance URL ends where the path starts: look its pool up by it.
        cut = url.find("/", url.find("//") + 2)
        origin, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = self._new_pool(origin)
        return Exchange(self._watch, pool, method, target, headers, body, timeout, self._read_timeout)

    def _new_pool(self, origin: str) -> Pool:
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
        return Pool(host=parts.hostname, port=port, tls=tls, timeouts=self._timeouts, pool=self._pool_config)

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        # Aborted transports finish closing on the next loop iteration: let them, so none
        # is left half-closed when the worker's loop stops.
        await asyncio.sleep(0)


