"""An in-process HTTP/1.1 upstream that answers every request with one fixed JSON body.

It runs on the benchmark's own event loop, so a full request through the ASGI app can be
measured without a second process. It is deliberately minimal: keep-alive, pipelining and
bodiless requests only (what the benchmarks send), with the response prepared once.
The body is the same 37 bytes the load harness's nginx upstream returns.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

BODY = b'{"status":"ok","service":"upstream1"}'
assert len(BODY) == 37  # the reference body size named in docs/performance.md

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
_END = b"\r\n\r\n"


class _FixedResponse(asyncio.Protocol):
    def __init__(self, open_transports: set[asyncio.Transport]) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._open = open_transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._open.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        complete = buffer.count(_END)
        if complete:
            self._buffer = buffer[buffer.rfind(_END) + len(_END) :]
            assert self._transport is not None
            self._transport.write(RESPONSE * complete)
        else:
            self._buffer = buffer


class FixedUpstream:
    """Listens on 127.0.0.1 (a free port) in the running loop until ``close``."""

    def __init__(self) -> None:
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        transports = self._transports
        self._server = await loop.create_server(lambda: _FixedResponse(transports), sock=sock, backlog=128)

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            # Server.close_clients() is Python 3.13+; close keep-alive connections ourselves.
            for transport in list(self._transports):
                transport.close()
            await server.wait_closed()
