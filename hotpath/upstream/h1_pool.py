"""Keep-alive connections to one origin, for one worker: LIFO reuse, a bound on idle and on
open connections, and an idle timeout."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl

from hotpath.upstream.client import (
    UpstreamConnectError,
    UpstreamTimeout,
)
from hotpath.upstream.config import PoolConfig, Timeouts
from hotpath.upstream.h1_connection import CRLF, Connection, ConnectionOwner


class Pool(ConnectionOwner):
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
        self.host_header = b"host: " + authority.encode("idna") + CRLF
        self._connect_timeout = timeouts.connect
        self._idle_timeout = pool.idle_timeout
        self._max_idle = pool.max_idle_per_host
        self._max_connections = pool.max_connections
        self._idle: list[Connection] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self.size = 0
        self._closed = False
        # The pool's connections belong to the loop it was made in; so do its futures.
        self.loop = asyncio.get_running_loop()
        super().__init__(self.loop.time)

    def take_idle(self) -> Connection | None:
        """An idle keep-alive connection, if there is one (no await: the common case)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def open(self, deadline: float) -> tuple[Connection, bool]:
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

    async def _connect(self, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(self)
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

    def release(self, conn: Connection, reusable: bool) -> None:
        if not reusable or conn.closed or self._closed or len(self._idle) >= self._max_idle:
            conn.abort()  # connection_lost calls forget(), which frees its slot
            return
        conn.idle_since = self.clock()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._idle_timeout, self._close_idle)
        self._wake_waiter()

    def forget(self, conn: Connection) -> None:
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


