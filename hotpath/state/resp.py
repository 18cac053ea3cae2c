"""A lean, pipelined RESP2 connection for the hot path's script calls.

Why: coredis spends about 170 µs of CPU per command in its anyio machinery (stream
send with cancel scopes, pool checkout, the writer task). The rate-limit batcher makes one
call per handful of requests, so that alone cost about 40 µs per request. This link writes
commands encoded ahead of time straight to an asyncio transport and parses replies with
hiredis: about 30 µs per call. It carries only the batcher's ``EVALSHA``; coredis keeps
everything else (script loading, pub/sub, the cache, Cluster topology and redirects).

Replies arrive in the order commands were written, so waiters form a FIFO. A caller that
gives up (its deadline passed) takes the connection down with it: a silent connection may be
a dead one, and the next call connects afresh. Any other command in flight on it fails at
once rather than waiting out its own deadline.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from typing import Any, cast

import coredis
import hiredis
from coredis.connection import TCPLocation


class ReplyError(Exception):
    """An error reply from Redis (``NOSCRIPT ...``, ``MOVED ...``, ``ERR ...``)."""

    @property
    def code(self) -> str:
        message = str(self.args[0]) if self.args else ""
        return message.split(" ", 1)[0]


class LinkDown(ConnectionError):
    """The link could not connect, or its connection was lost with commands in flight."""


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*parts: bytes | str | int) -> bytes:
    """A whole RESP command, for payloads prepared once (handshakes, tests)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, int):
            out.append(bulk(b"%d" % part))
        elif isinstance(part, str):
            out.append(bulk(part.encode()))
        else:
            out.append(bulk(part))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    __slots__ = ("lost", "reader", "transport", "waiters")

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        waiters = self.waiters
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                fut = waiters.popleft()
                if not fut.done():
                    if isinstance(reply, ReplyError):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # A reply that cannot be parsed or matched: nothing after it can be trusted.
            self._fail(LinkDown(f"Redis protocol error: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LinkDown(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        waiters, self.waiters = self.waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)


def _write(proto: _Protocol, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """Queue the reply's future, then write the command (replies come back in order)."""
    fut: asyncio.Future[Any] = loop.create_future()
    proto.waiters.append(fut)
    assert proto.transport is not None
    proto.transport.write(payload)
    return fut


class RespLink:
    """One pipelined connection to one Redis node, connected on first use and after a loss."""

    __slots__ = ("_closed", "_connecting", "_proto", "connect_timeout", "db", "host", "password", "port",
                 "server_hostname", "ssl", "username")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.username = username
        self.password = password
        self.db = db
        self.ssl = ssl
        self.server_hostname = host if ssl is not None else None
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._closed = False

    @classmethod
    def for_client(cls, client: Any, *, connect_timeout: float) -> RespLink | None:
        """A link with exactly the settings of a standalone coredis client: its host, port,
        database, credentials and TLS context (certificate checks included). None where
        the link cannot follow it: a Unix socket, a credential provider."""
        pool = getattr(client, "connection_pool", None)
        location = getattr(pool, "location", None)
        settings = getattr(pool, "connection_kwargs", None)
        if not isinstance(location, TCPLocation) or not isinstance(settings, dict):
            return None
        if settings.get("credential_provider") is not None:
            return None
        return cls(
            location.host,
            location.port,
            connect_timeout=connect_timeout,
            username=settings.get("username"),
            password=settings.get("password"),
            db=int(settings.get("db") or 0),
            ssl=settings.get("ssl_context"),
        )

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: float) -> RespLink:
        """A link for a Redis URL, parsed by coredis (query options such as ``db`` and the
        ``ssl_*`` settings included), so it connects exactly as a coredis client would."""
        link = cls.for_client(coredis.Redis.from_url(url), connect_timeout=connect_timeout)
        if link is None:
            scheme = url.split(":", 1)[0]
            raise ValueError(f"the lean link needs a TCP Redis URL (redis:// or rediss://), not {scheme!r}")
        return link

    async def call(self, payload: bytes) -> Any:
        """Send one encoded command and return its reply; error replies raise ReplyError."""
        proto = self._proto
        if proto is None or proto.lost:
            if self._closed:
                raise LinkDown("the Redis link is closed")
            proto = await self._connected()
            if proto.lost:  # lost again before this caller resumed
                raise LinkDown(f"Redis connection to {self.host}:{self.port} lost")
        fut = _write(proto, payload, asyncio.get_running_loop())
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller gave up (its deadline passed) before its reply came: the connection
            # may be dead without knowing it (a host gone without a reset), and every later
            # call would wait out its deadline too. Drop it; the next call connects afresh.
            if not fut.done() or fut.cancelled():
                self._drop(proto)
            raise

    def send(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any] | None:
        """Write one encoded command now, on a live connection, and return the future of its
        reply (error replies are set as ReplyError). None when no connection is up: ``call``
        makes one. A caller that stops waiting must ``abandon`` the future."""
        proto = self._proto
        if proto is None or proto.lost:
            return None
        return _write(proto, payload, loop)

    def abandon(self, fut: asyncio.Future[Any]) -> None:
        """Give up on a reply ``send`` promised: its connection is dropped, as in ``call``."""
        proto = self._proto
        if proto is not None and fut in proto.waiters:
            self._drop(proto)

    def _drop(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None
        assert proto.transport is not None
        proto.transport.abort()

    async def _connected(self) -> _Protocol:
        # Concurrent callers share one connection attempt.
        task = self._connecting
        if task is None:
            task = self._connecting = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(self._connect_done)
        return await asyncio.shield(task)

    def _connect_done(self, task: asyncio.Task[_Protocol]) -> None:
        self._connecting = None
        if task.cancelled() or task.exception() is not None:
            return
        proto = task.result()
        if self._closed:  # closed while connecting: nobody will use or close this one
            if proto.transport is not None:
                proto.transport.abort()
            return
        self._proto = proto

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(
                    _Protocol, self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
                )
        except TimeoutError:
            raise LinkDown(f"connecting to Redis at {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise LinkDown(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._handshake(proto)
        except BaseException as exc:
            assert proto.transport is not None
            proto.transport.abort()
            if isinstance(exc, (ReplyError, TimeoutError)):
                raise LinkDown(f"Redis at {self.host}:{self.port} refused the handshake: {exc}") from None
            raise
        return proto

    async def _handshake(self, proto: _Protocol) -> None:
        handshake: list[bytes] = []
        if self.password is not None:
            if self.username is not None:
                handshake.append(command(b"AUTH", self.username, self.password))
            else:
                handshake.append(command(b"AUTH", self.password))
        if self.db:
            handshake.append(command(b"SELECT", self.db))
        if not handshake:
            return
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in handshake]
        proto.waiters.extend(waiters)
        assert proto.transport is not None
        proto.transport.write(b"".join(handshake))
        for fut in waiters:
            await fut

    def close(self) -> None:
        self._closed = True
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
        if self._connecting is not None:
            self._connecting.cancel()
