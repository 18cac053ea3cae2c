"""The admin API's own HTTP/1.1 listener, embedded in every worker.

Why embedded, not a separate process: admin actions must reach state that lives inside
the workers (local breaker copies, the in-process state backend of a single-worker
gateway, per-worker caches). Each worker binds the admin address with ``SO_REUSEPORT``
and the kernel spreads admin connections over the workers; state kept in Redis is the
same from every worker, and per-worker state is reported by the worker that answered
(its pid is in every response).

Granian serves one listener per server, so this one is a small asyncio server: h11 does
the HTTP/1.1 parsing and framing, and each request is handed to the admin ASGI app. It is
bounded everywhere: head and body sizes, a timeout per read, a cap on connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import h11

log = logging.getLogger("gatehouse.admin")

MAX_HEAD_BYTES = 16 * 1024
_ERROR_413 = b'{"error":{"code":"PAYLOAD_TOO_LARGE","message":"request body too large"},"request_id":null}'
_ERROR_400 = b'{"error":{"code":"BAD_REQUEST","message":"malformed HTTP request"},"request_id":null}'


class AdminListener:
    __slots__ = ("_app", "_conns", "_host", "_limit", "_max_body", "_port", "_server", "_timeout")

    def __init__(self, app: Any, host: str, port: int, *, timeout: float, max_body: int, max_connections: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._timeout = timeout
        self._max_body = max_body
        self._limit = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            port: int = self._server.sockets[0].getsockname()[1]
            return port
        return self._port

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            async with self._limit:
                await self._connection(reader, writer)
        except (TimeoutError, ConnectionError, h11.ProtocolError):
            pass
        except Exception:
            log.exception("admin connection failed")
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or (self._host, self._port)
        while True:
            request: h11.Request | None = None
            body = bytearray()
            too_large = False
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    await self._send_simple(conn, writer, 400, _ERROR_400)
                    return
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65_536), self._timeout)
                    conn.receive_data(data)  # b"" marks the peer's end of stream
                    continue
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    if len(body) + len(event.data) > self._max_body:
                        too_large = True
                    else:
                        body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            if too_large:
                await self._send_simple(conn, writer, 413, _ERROR_413)
                return
            status, headers, payload = await self._call(request, bytes(body), peer, local)
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            if payload and request.method != b"HEAD":
                writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await asyncio.wait_for(writer.drain(), self._timeout)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _send_simple(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        with contextlib.suppress(h11.LocalProtocolError):
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await asyncio.wait_for(writer.drain(), self._timeout)

    async def _call(
        self, request: h11.Request, body: bytes, peer: tuple[Any, ...], local: tuple[Any, ...]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        target = request.target
        raw_path, _, query = target.partition(b"?")
        from urllib.parse import unquote_to_bytes

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers],
            "client": (peer[0], peer[1]) if len(peer) >= 2 else None,
            "server": (local[0], local[1]) if len(local) >= 2 else None,
        }
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nothing more comes; the app is never meant to ask
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await asyncio.wait_for(self._app(scope, receive, send), self._timeout * 3)
        payload = b"".join(chunks)
        headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(payload)).encode()))
        return status, headers, payload
