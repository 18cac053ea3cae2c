"""A lean, pipelined RESP2 connection, and ``Links``: which connection serves a key's slot.

Why not coredis for the hot path's script calls: coredis runs every command through its
anyio machinery (a stream send with cancel scopes, a pool checkout, a writer task), which
cost most of the rate limiter's CPU. A link writes commands encoded ahead of time straight
to an asyncio transport and parses replies with hiredis. coredis keeps what it is needed
for: Cluster topology, redirects, pub/sub and the commands of the admin API and the cache.

Replies arrive in the order commands were written, so waiters form a FIFO. A caller that
gives up (its deadline passed) takes the connection down with it: a silent connection may
be a dead one, and the next command connects afresh. Any other command in flight on it
fails at once rather than waiting out its own deadline.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from typing import Any, cast

import coredis
import hiredis
from coredis.connection import TCPLocation, UnixDomainSocketLocation

from hotpath.redis.resp import LinkDown, ReplyError, command


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
            self.fail(LinkDown(f"Redis protocol error: {exc}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(LinkDown(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def fail(self, exc: Exception) -> None:
        self.lost = True
        waiters, self.waiters = self.waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    def write(self, payload: bytes, fut: asyncio.Future[Any]) -> None:
        """Queue the reply's future, then write the command (replies come back in order)."""
        self.waiters.append(fut)
        assert self.transport is not None
        self.transport.write(payload)


class RespLink:
    """One pipelined connection to one Redis node, connected on first use and after a loss.

    ``send`` never waits: on a live connection it writes at once; otherwise the command is
    queued, one connection attempt starts, and the queue is written when it succeeds (or
    failed with ``LinkDown`` when it does not).
    """

    __slots__ = ("_closed", "_connecting", "_proto", "_queued", "connect_timeout", "db", "host", "password",
                 "path", "port", "server_hostname", "ssl", "username")

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
        path: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # A Unix socket instead of host and port.
        self.path = path
        self.connect_timeout = connect_timeout
        self.username = username
        self.password = password
        self.db = db
        self.ssl = ssl
        self.server_hostname = host if ssl is not None else None
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._closed = False

    @classmethod
    def for_client(cls, client: Any, *, connect_timeout: float) -> RespLink | None:
        """A link with exactly the settings of a standalone coredis client: its address,
        database, credentials and TLS context (certificate checks included). None where the
        link cannot follow it: a credential provider."""
        pool = getattr(client, "connection_pool", None)
        location = getattr(pool, "location", None)
        settings = getattr(pool, "connection_kwargs", None)
        if not isinstance(settings, dict) or settings.get("credential_provider") is not None:
            return None
        common: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "username": settings.get("username"),
            "password": settings.get("password"),
            "db": int(settings.get("db") or 0),
        }
        if isinstance(location, TCPLocation):
            return cls(location.host, location.port, ssl=settings.get("ssl_context"), **common)
        if isinstance(location, UnixDomainSocketLocation):
            return cls("localhost", 0, path=location.path, **common)
        return None

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: float) -> RespLink:
        """A link for a Redis URL, parsed by coredis (query options such as ``db`` and the
        ``ssl_*`` settings included), so it connects exactly as a coredis client would."""
        link = cls.for_client(coredis.Redis.from_url(url), connect_timeout=connect_timeout)
        if link is None:
            scheme = url.split(":", 1)[0]
            raise ValueError(f"no lean link for a {scheme!r} Redis URL")
        return link

    def describe(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"

    async def call(self, payload: bytes) -> Any:
        """Send one encoded command and return its reply; error replies raise ReplyError."""
        fut = self.send(payload, asyncio.get_running_loop())
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller gave up (its deadline passed) before its reply came.
            self.abandon(fut)
            raise

    def send(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Write one encoded command and return the future of its reply (error replies are
        set as ReplyError). A caller that stops waiting must ``abandon`` the future."""
        fut: asyncio.Future[Any] = loop.create_future()
        proto = self._proto
        if proto is not None and not proto.lost:
            proto.write(payload, fut)
            return fut
        if self._closed:
            fut.set_exception(LinkDown("the Redis link is closed"))
            return fut
        self._queued.append((payload, fut))
        if self._connecting is None:
            task = self._connecting = loop.create_task(self._connect())
            task.add_done_callback(self._connect_done)
        return fut

    def abandon(self, fut: asyncio.Future[Any]) -> None:
        """Give up on a reply ``send`` promised. A command already written takes its
        connection down: the connection may be dead without knowing it (a host gone without
        a reset), and every later command would wait out its deadline too."""
        proto = self._proto
        if proto is not None and fut in proto.waiters:
            self._drop(proto)
            return
        self._queued = [(p, f) for p, f in self._queued if f is not fut]

    def _drop(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None
        assert proto.transport is not None
        proto.transport.abort()

    def _connect_done(self, task: asyncio.Task[_Protocol]) -> None:
        self._connecting = None
        queued, self._queued = self._queued, []
        if task.cancelled():
            error: BaseException = LinkDown("the Redis link is closed")
        else:
            failed = task.exception()
            if failed is None:
                proto = task.result()
                if self._closed:  # closed while connecting: nobody will use or close this one
                    if proto.transport is not None:
                        proto.transport.abort()
                    error = LinkDown("the Redis link is closed")
                else:
                    self._proto = proto
                    for payload, fut in queued:
                        if not fut.done():
                            proto.write(payload, fut)
                    return
            else:
                error = failed
        for _, fut in queued:
            if not fut.done():
                fut.set_exception(error)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        where = self.describe()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path is not None:
                    _, proto = await loop.create_unix_connection(_Protocol, self.path)
                else:
                    _, proto = await loop.create_connection(
                        _Protocol, self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
                    )
        except TimeoutError:
            raise LinkDown(f"connecting to Redis at {where} timed out") from None
        except OSError as exc:
            raise LinkDown(f"cannot connect to Redis at {where}: {exc}") from None
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._handshake(proto)
        except BaseException as exc:
            assert proto.transport is not None
            proto.transport.abort()
            if isinstance(exc, (ReplyError, TimeoutError, LinkDown)):
                raise LinkDown(f"Redis at {where} refused the handshake: {exc}") from None
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


class Links:
    """Which link serves a key's slot: the one link of a standalone Redis.

    ``ClusterLinks`` (``hotpath.redis.cluster``) maps slots to primaries instead."""

    cluster = False

    def __init__(self, link: RespLink) -> None:
        self._only = link

    def for_slot(self, slot: int) -> RespLink | None:
        """The link for ``slot``; None when no node is known to serve it."""
        return self._only

    def all(self) -> list[RespLink]:
        """A link to every primary known now (for loading a script everywhere)."""
        return [self._only]

    async def warm(self, ping: bytes) -> None:
        """Connect now, so the first requests do not pay the handshake."""
        await asyncio.gather(*(link.call(ping) for link in self.all()), return_exceptions=True)

    def close(self) -> None:
        self._only.close()
