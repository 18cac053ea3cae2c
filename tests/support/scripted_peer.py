"""A scripted upstream: a real TCP peer, in a thread with its own event loop, that answers
each parsed request from a handler the test writes (including framings and failures a
real server would never send)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.processes import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Request"], Awaitable[bool]]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes


@dataclass
class Peer:
    """A scripted upstream: ``handler`` answers each parsed request; False closes."""

    handler: Handler
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    return Request(method, target, headers, body, head)


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Handler], Peer]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    def start(handler: Handler) -> Peer:
        peer = Peer(handler, port=free_port())

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer.connections += 1
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            writers.append(writer)
            try:
                while True:
                    request = await _read_request(reader)
                    if request is None:
                        break
                    peer.requests.append(request)
                    if not await peer.handler(reader, writer, request):
                        break
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                tasks.discard(task)

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(serve, "127.0.0.1", peer.port)

        servers.append(asyncio.run_coroutine_threadsafe(listen(), loop).result(5))
        return peer

    yield start

    async def close() -> None:
        # A connection the client opened just before the test ended may not be accepted,
        # or its handler not started, yet: let both happen first, so that every accepted
        # transport has a handler (and a writer here) that closes it.
        await asyncio.sleep(0.05)
        for s in servers:
            s.close()
        for t in list(tasks):
            t.cancel()
        for _ in range(500):
            if not tasks:
                break
            await asyncio.sleep(0.01)
        for w in writers:  # whatever path a handler took, its transport ends here
            w.transport.abort()
        await asyncio.sleep(0.05)  # let the closed transports finish

    asyncio.run_coroutine_threadsafe(close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def answer(raw: bytes, *, keep: bool = True) -> Handler:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(raw)
        return keep

    return handler
