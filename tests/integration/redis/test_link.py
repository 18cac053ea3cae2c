"""The lean RESP link against real redis-servers: pipelining, errors, auth, loss, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import coredis
import pytest

from hotpath.redis.link import RespLink
from hotpath.redis.resp import LinkDown, ReplyError, command
from tests.support.processes import RedisServer, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(extra_args=("--enable-debug-command", "yes"))
    yield s
    s.stop()


async def test_pipelined_replies_reach_their_own_callers(server: RedisServer) -> None:
    link = RespLink.from_url(server.url, connect_timeout=1.0)
    try:
        await link.call(command(b"DEL", b"resp:n"))
        replies = await asyncio.gather(*(link.call(command(b"INCR", b"resp:n")) for _ in range(200)))
        assert replies == list(range(1, 201))  # written in order, answered in order
        assert await link.call(command(b"ECHO", "José")) == "José".encode()
    finally:
        link.close()


async def test_error_reply_raises_with_its_code(server: RedisServer) -> None:
    link = RespLink.from_url(server.url, connect_timeout=1.0)
    try:
        with pytest.raises(ReplyError) as info:
            await link.call(command(b"EVALSHA", b"0" * 40, 0))
        assert info.value.code == "NOSCRIPT"
        assert await link.call(command(b"PING")) == b"PONG"  # the link is still usable
    finally:
        link.close()


async def test_a_caller_that_gives_up_takes_the_connection_down(server: RedisServer) -> None:
    link = RespLink.from_url(server.url, connect_timeout=1.0)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await link.call(command(b"DEBUG", b"SLEEP", b"0.3"))
        # A fresh connection: the late "OK" of DEBUG SLEEP is never taken as this reply.
        assert await link.call(command(b"ECHO", b"mine")) == b"mine"
    finally:
        link.close()


async def test_a_silent_peer_costs_one_deadline_then_a_new_connection() -> None:
    # A peer that accepts and never answers: a Redis host gone without a reset.
    accepted: list[asyncio.StreamReader] = []
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        while await reader.read(1024):
            pass
        closed.set()
        writer.close()

    peer = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    link = RespLink("127.0.0.1", port, connect_timeout=1.0)
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await link.call(command(b"PING"))
        await asyncio.wait_for(closed.wait(), 2.0)  # the first connection was dropped
        assert len(accepted) == 2  # the second call connected afresh
    finally:
        link.close()
        peer.close()
        await peer.wait_closed()


async def test_url_credentials_and_database_are_used() -> None:
    s = RedisServer(extra_args=("--requirepass", "s3cret"))
    try:
        link = RespLink.from_url(f"redis://:s3cret@127.0.0.1:{s.port}/3", connect_timeout=1.0)
        try:
            await link.call(command(b"SET", b"resp:db", b"x"))
        finally:
            link.close()
        assert s.cli("-a", "s3cret", "--no-auth-warning", "-n", "3", "get", "resp:db") == "x"
        assert s.cli("-a", "s3cret", "--no-auth-warning", "-n", "0", "exists", "resp:db") == "0"
        wrong = RespLink.from_url(f"redis://:nope@127.0.0.1:{s.port}", connect_timeout=1.0)
        with pytest.raises(LinkDown, match="refused the handshake"):
            await wrong.call(command(b"PING"))
        wrong.close()
    finally:
        s.stop()


async def test_acl_user_authenticates_with_username() -> None:
    s = RedisServer()
    try:
        s.cli("acl", "setuser", "gate", "on", ">pw", "~*", "+@all")
        link = RespLink.from_url(f"redis://gate:pw@127.0.0.1:{s.port}", connect_timeout=1.0)
        try:
            assert await link.call(command(b"ACL", b"WHOAMI")) == b"gate"
        finally:
            link.close()
    finally:
        s.stop()


async def test_lost_connection_fails_waiters_then_reconnects() -> None:
    s = RedisServer(extra_args=("--enable-debug-command", "yes"))
    try:
        link = RespLink.from_url(s.url, connect_timeout=0.5)
        assert await link.call(command(b"PING")) == b"PONG"
        in_flight = asyncio.ensure_future(link.call(command(b"DEBUG", b"SLEEP", b"2")))
        await asyncio.sleep(0.1)
        s.kill()
        with pytest.raises(LinkDown):
            await asyncio.wait_for(in_flight, 1.0)  # never left hanging
        with pytest.raises(LinkDown, match="cannot connect"):
            await link.call(command(b"PING"))
        s.start()
        assert await link.call(command(b"PING")) == b"PONG"
        link.close()
    finally:
        s.stop()


async def test_nothing_listening_is_link_down_not_a_hang() -> None:
    link = RespLink("127.0.0.1", free_port(), connect_timeout=0.5)
    with pytest.raises(LinkDown):
        await asyncio.wait_for(link.call(command(b"PING")), 2.0)
    assert isinstance(LinkDown("x"), OSError)  # the batcher counts it as an outage


def test_settings_are_the_coredis_clients_own() -> None:
    # A Unix socket: the link connects to its path (no coredis for a local Redis either).
    assert RespLink.from_url("unix:///tmp/redis.sock?db=3", connect_timeout=1.0).path == "/tmp/redis.sock"
    url = "rediss://u:p%40ss@redis.example:6380/2"
    link = RespLink.from_url(url, connect_timeout=1.0)
    own = coredis.Redis.from_url(url).connection_pool.connection_kwargs
    assert (link.host, link.port, link.username, link.db) == ("redis.example", 6380, "u", 2)
    assert link.password == own["password"]  # whatever coredis makes of it, the link sends the same
    assert link.ssl is not None and link.server_hostname == "redis.example"
    # The database from the query string, as coredis reads it.
    assert RespLink.from_url("redis://127.0.0.1:6390?db=5", connect_timeout=1.0).db == 5
    # The very TLS context coredis uses (its CA file, certificate requirements, hostname check).
    client = coredis.Redis.from_url("rediss://redis.example:6380?ssl_cert_reqs=none")
    tls = RespLink.for_client(client, connect_timeout=1.0)
    assert tls is not None and tls.ssl is client.connection_pool.connection_kwargs["ssl_context"]


async def test_database_from_the_query_string_is_selected(server: RedisServer) -> None:
    link = RespLink.from_url(f"{server.url}?db=4", connect_timeout=1.0)
    try:
        await link.call(command(b"SET", b"resp:q", b"y"))
    finally:
        link.close()
    assert server.cli("-n", "4", "get", "resp:q") == "y"


async def test_a_closed_link_refuses_calls(server: RedisServer) -> None:
    link = RespLink.from_url(server.url, connect_timeout=1.0)
    assert await link.call(command(b"PING")) == b"PONG"
    link.close()
    with pytest.raises(LinkDown, match="closed"):
        await link.call(command(b"PING"))


def test_works_on_uvloop_as_the_gateway_runs_it(server: RedisServer) -> None:
    import uvloop

    async def run() -> bytes:
        link = RespLink.from_url(server.url, connect_timeout=1.0)
        try:
            await asyncio.gather(*(link.call(command(b"PING")) for _ in range(10)))
            reply: bytes = await link.call(command(b"ECHO", b"uv"))
            return reply
        finally:
            link.close()

    assert uvloop.run(run()) == b"uv"
