"""The in-loop HTTP/1.1 client against a real TCP peer that answers from a script.

The peer runs in its own thread with its own event loop, so every byte crosses a real
loopback socket; each test scripts exactly what the upstream sends, including the
framings and failures a library-backed client would hide from us.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from hotpath.upstream.client import UpstreamBodyError, UpstreamConnectError, UpstreamTimeout
from hotpath.upstream.config import PoolConfig, Timeouts
from hotpath.upstream.h1_client import H1UpstreamClient
from hotpath.upstream.h1_connection import UpstreamProtocolError
from tests.support.processes import free_port
from tests.support.scripted_peer import Handler, Peer, Request, answer


def client(read: float = 5.0, **pool: int | float | None) -> H1UpstreamClient:
    return H1UpstreamClient(Timeouts(connect=1.0, read=read, total=10.0), PoolConfig(**pool))  # type: ignore[arg-type]


async def fetch(
    c: H1UpstreamClient,
    url: str,
    method: str = "GET",
    body: bytes | AsyncIterator[bytes] | None = None,
    timeout: float = 5.0,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    async with c.stream(method, url, headers or [], body, timeout) as r:
        chunks = []
        while (chunk := await r.read_chunk()) is not None:
            chunks.append(chunk)
        return r.status, list(r.headers), b"".join(chunks)


OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello"


async def test_content_length_response_and_keep_alive_reuse(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK5))
    c = client()
    for _ in range(5):
        status, headers, body = await fetch(c, peer.url + "/a?b=1")
        assert (status, body) == (200, b"hello")
        assert (b"x-up", b"1") in headers
    assert peer.connections == 1
    assert [r.target for r in peer.requests] == ["/a?b=1"] * 5
    assert peer.requests[0].headers["host"] == f"127.0.0.1:{peer.port}"
    await c.close()


async def test_request_head_carries_headers_byte_for_byte(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK5))
    c = client()
    await fetch(c, peer.url + "/x", headers=[(b"x-user", "José".encode()), (b"x-latin", b"caf\xe9")])
    raw = peer.requests[0].raw_head
    assert raw.startswith(b"GET /x HTTP/1.1\r\n")
    assert "x-user: José\r\n".encode() in raw
    assert b"x-latin: caf\xe9\r\n" in raw
    await c.close()


async def test_chunked_response_is_decoded(peer_factory: Callable[[Handler], Peer]) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    peer = peer_factory(answer(raw))
    c = client()
    assert (await fetch(c, peer.url))[2] == b"abcde"
    assert (await fetch(c, peer.url))[2] == b"abcde"
    assert peer.connections == 1
    await c.close()


async def test_body_delimited_by_close(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", keep=False))
    c = client()
    assert (await fetch(c, peer.url))[2] == b"until the end"
    assert (await fetch(c, peer.url))[2] == b"until the end"
    assert peer.connections == 2  # never reused after Connection: close
    await c.close()


async def test_head_response_has_no_body_and_connection_is_reused(peer_factory: Callable[[Handler], Peer]) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" if q.method == "HEAD" else OK5)
        return True

    peer = peer_factory(handler)
    c = client()
    status, headers, body = await fetch(c, peer.url, "HEAD")
    assert (status, body, (b"content-length", b"100") in headers) == (200, b"", True)
    assert (await fetch(c, peer.url))[2] == b"hello"
    assert peer.connections == 1
    await c.close()


async def test_interim_1xx_is_skipped_and_204_has_no_body(peer_factory: Callable[[Handler], Peer]) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        if q.target == "/early":
            w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            w.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        else:
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    peer = peer_factory(handler)
    c = client()
    status, headers, body = await fetch(c, peer.url + "/early")
    assert (status, body) == (201, b"ok")
    assert all(k != b"link" for k, _ in headers)
    assert (await fetch(c, peer.url + "/nothing"))[:3:2] == (204, b"")
    assert (await fetch(c, peer.url + "/early"))[0] == 201
    assert peer.connections == 1
    await c.close()


async def test_bytes_body_gets_content_length(peer_factory: Callable[[Handler], Peer]) -> None:
    async def echo(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(q.body), q.body))
        return True

    peer = peer_factory(echo)
    c = client()
    payload = bytes(range(256)) * 1000
    assert (await fetch(c, peer.url, "POST", payload))[2] == payload
    assert peer.requests[0].headers["content-length"] == str(len(payload))
    await fetch(c, peer.url, "POST", None)
    assert peer.requests[1].headers["content-length"] == "0"  # POST without a body
    await fetch(c, peer.url, "GET", None)
    assert "content-length" not in peer.requests[2].headers
    await c.close()


async def test_streamed_body_goes_chunked(peer_factory: Callable[[Handler], Peer]) -> None:
    async def echo(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(q.body), q.body))
        return True

    async def parts() -> AsyncIterator[bytes]:
        for i in range(50):
            yield b"part-%d;" % i
            await asyncio.sleep(0)

    peer = peer_factory(echo)
    c = client()
    status, _, body = await fetch(c, peer.url, "PUT", parts())
    assert status == 200
    assert body == b"".join(b"part-%d;" % i for i in range(50))
    assert peer.requests[0].headers["transfer-encoding"] == "chunked"
    await c.close()


async def test_failing_upload_is_a_body_error(peer_factory: Callable[[Handler], Peer]) -> None:
    async def slow(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(OK5)
        return True

    class Broken(Exception):
        pass

    async def parts() -> AsyncIterator[bytes]:
        yield b"first"
        raise UpstreamBodyError(Broken())

    peer = peer_factory(slow)
    c = client()
    with pytest.raises(UpstreamBodyError) as info:
        await fetch(c, peer.url, "POST", parts())
    assert isinstance(info.value.cause, Broken)
    await c.close()


async def test_stale_keep_alive_connection_is_retried_once(peer_factory: Callable[[Handler], Peer]) -> None:
    # The peer answers, then closes without saying so: the pooled connection is dead when
    # the next request is written on it, and the client must take a fresh one.
    served = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        nonlocal served
        served += 1
        w.write(OK5)
        await w.drain()
        return False

    peer = peer_factory(handler)
    c = client()
    for _ in range(3):
        assert (await fetch(c, peer.url))[2] == b"hello"
    assert served == 3
    await c.close()


async def test_read_timeout_and_total_deadline(peer_factory: Callable[[Handler], Peer]) -> None:
    async def silent(r: asyncio.StreamReader, _w: asyncio.StreamWriter, _q: Request) -> bool:
        await asyncio.sleep(3)
        return False

    peer = peer_factory(silent)
    c = client(read=0.2)
    with pytest.raises(UpstreamTimeout) as read:
        await fetch(c, peer.url)
    assert read.value.phase == "read"
    c2 = client(read=5.0)
    with pytest.raises(UpstreamTimeout) as total:
        await fetch(c2, peer.url, timeout=0.2)
    assert total.value.phase == "total"
    await c.close()
    await c2.close()


async def test_trickling_body_is_not_a_read_timeout(peer_factory: Callable[[Handler], Peer]) -> None:
    async def trickle(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):
            await w.drain()
            await asyncio.sleep(0.1)
            w.write(b"1\r\nx\r\n")
        w.write(b"0\r\n\r\n")
        return True

    peer = peer_factory(trickle)
    c = client(read=0.3)
    assert (await fetch(c, peer.url))[2] == b"xxxxxx"
    await c.close()


async def test_malformed_response_is_a_protocol_error(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(b"SMTP ready\r\n\r\n"))
    c = client()
    with pytest.raises(UpstreamProtocolError):
        await fetch(c, peer.url)
    await c.close()


async def test_close_mid_body_is_an_error_not_a_short_body(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", keep=False))
    c = client()
    with pytest.raises(UpstreamConnectError) as info:
        await fetch(c, peer.url)
    assert info.value.before_send is False
    await c.close()


async def test_refused_connection_is_before_send() -> None:
    c = client()
    with pytest.raises(UpstreamConnectError) as info:
        await fetch(c, f"http://127.0.0.1:{free_port()}/")
    assert info.value.before_send is True
    await c.close()


async def test_pool_bound_queues_requests(peer_factory: Callable[[Handler], Peer]) -> None:
    async def slowish(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        await asyncio.sleep(0.02)
        w.write(OK5)
        return True

    peer = peer_factory(slowish)
    c = client(max_connections=3)
    results = await asyncio.gather(*(fetch(c, peer.url) for _ in range(30)))
    assert all(r[2] == b"hello" for r in results)
    assert peer.connections == 3
    await c.close()


async def test_idle_connections_close_after_idle_timeout(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK5))
    c = client(idle_timeout=0.1)
    await fetch(c, peer.url)
    await asyncio.sleep(0.4)
    await fetch(c, peer.url)
    assert peer.connections == 2
    await c.close()


async def test_abandoned_response_closes_its_connection(peer_factory: Callable[[Handler], Peer]) -> None:
    async def endless(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            w.write(b"5\r\nhello\r\n")
            await w.drain()
            await asyncio.sleep(0.01)
        return False

    peer = peer_factory(endless)
    c = client()
    async with c.stream("GET", peer.url, [], None, 5.0) as r:
        assert await r.read_chunk()
    # The next exchange must not inherit the rest of that stream.
    peer.handler = answer(OK5)
    assert (await fetch(c, peer.url))[2] == b"hello"
    assert peer.connections == 2
    await c.close()


async def test_slow_reader_pauses_the_socket_and_gets_every_byte(peer_factory: Callable[[Handler], Peer]) -> None:
    size = 8 * 1024 * 1024

    async def big(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * 65536
        for _ in range(size // len(block)):
            w.write(block)
            await w.drain()
        return True

    peer = peer_factory(big)
    c = client()
    got = 0
    peak = 0
    async with c.stream("GET", peer.url, [], None, 10.0) as r:
        while (chunk := await r.read_chunk()) is not None:
            got += len(chunk)
            peak = max(peak, len(chunk))
            await asyncio.sleep(0.001)
    assert got == size
    assert peak < 2 * 1024 * 1024  # buffered up to the high-water mark, not the whole body
    await c.close()


async def test_large_streamed_upload_waits_for_the_socket(peer_factory: Callable[[Handler], Peer]) -> None:
    async def count(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(len(q.body))), len(q.body)))
        return True

    block = b"u" * 131072

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield block

    peer = peer_factory(count)
    c = client()
    assert (await fetch(c, peer.url, "POST", parts(), timeout=20))[2] == str(40 * len(block)).encode()
    await c.close()


async def test_slow_upload_is_not_upstream_silence(peer_factory: Callable[[Handler], Peer]) -> None:
    # The upstream answers only after the whole body; the upload takes longer than the read
    # timeout, which must count from the body's end, not from the request's start.
    peer = peer_factory(answer(OK5))

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b"slow"
            await asyncio.sleep(0.1)

    c = client(read=0.3)
    assert (await fetch(c, peer.url, "POST", parts()))[2] == b"hello"
    await c.close()


async def test_connection_paused_by_a_big_last_read_is_reusable(peer_factory: Callable[[Handler], Peer]) -> None:
    # One read carries more than the high-water mark and ends the message: the socket was
    # paused for the slow reader, and must not go back to the pool paused.
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 400000\r\n\r\n" + b"b" * 400000

    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(big if q.target == "/big" else OK5)
        return True

    peer = peer_factory(handler)
    c = client(read=1.0)
    async with c.stream("GET", peer.url + "/big", [], None, 5.0) as r:
        await asyncio.sleep(0.2)  # everything arrives before the first read
        got = 0
        while (chunk := await r.read_chunk()) is not None:
            got += len(chunk)
    assert got == 400000
    assert (await fetch(c, peer.url + "/small", timeout=3.0))[2] == b"hello"
    assert peer.connections == 1
    await c.close()


async def test_post_is_never_replayed_on_a_dead_keep_alive_connection(peer_factory: Callable[[Handler], Peer]) -> None:
    # The upstream reads the POST and closes without answering: it may have acted on it,
    # so the client reports the failure instead of sending it again.
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        if q.method == "POST":
            return False
        w.write(OK5)
        return True

    peer = peer_factory(handler)
    c = client()
    await fetch(c, peer.url)
    with pytest.raises(UpstreamConnectError):
        await fetch(c, peer.url, "POST", b"pay once")
    assert [r.method for r in peer.requests] == ["GET", "POST"]
    await c.close()


async def test_reset_cuts_a_close_delimited_body_short(peer_factory: Callable[[Handler], Peer]) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial-")
        await w.drain()
        await asyncio.sleep(0.05)
        # Zero linger: closing sends RST, not FIN.
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()
        return False

    peer = peer_factory(handler)
    c = client()
    with pytest.raises(UpstreamConnectError):
        await fetch(c, peer.url)
    await c.close()


async def test_bytes_after_a_response_retire_the_connection(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK5 + b"HTTP/1.1 200 OK\r\n"))
    c = client()
    assert (await fetch(c, peer.url))[2] == b"hello"
    assert (await fetch(c, peer.url))[2] == b"hello"
    assert peer.connections == 2
    await c.close()


async def test_pool_slots_survive_cancelled_connects(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK5))
    c = client(max_connections=2)
    for _ in range(20):
        task = asyncio.ensure_future(fetch(c, peer.url))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, UpstreamConnectError):
            await task
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(fetch(c, peer.url) for _ in range(10)))
    assert all(r[2] == b"hello" for r in results)
    pool = next(iter(c._pools.values()))
    assert 0 <= pool.size <= 2
    await c.close()
