"""The data-path client choice, measured: one proxy loop, four HTTP clients.

A raw ASGI app (run under Granian by the ``clients`` scenario) forwards every request to
``BENCH_UPSTREAM`` with the client named by ``BENCH_CLIENT`` and streams the answer back.
The loop is the same for every client: each sits behind the gateway's own
``UpstreamClient`` interface (the gateway's own HTTP/1.1 client, ``h1``, as it is; pyreqwest,
aiohttp and httpx through the small adapters below), so the table compares the clients,
not the code around them. No gateway logic runs. The libraries take headers as text, so
their adapters decode and re-encode them: a cost a gateway on them pays too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from hotpath.upstream.client import Body, UpstreamClient, UpstreamResponse
from hotpath.upstream.config import PoolConfig, Timeouts

CLIENTS = ("h1", "pyreqwest", "aiohttp", "httpx")


def _text(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


def _raw(items: Any) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]


class _ReqwestResponse:
    def __init__(self, response: Any) -> None:
        self._reader = response.body_reader
        self.status: int = response.status
        self.headers = _raw(response.headers.items())

    async def read_chunk(self) -> bytes | None:
        chunk = await self._reader.read_chunk()
        return None if chunk is None else chunk.to_bytes()  # type: ignore[no-any-return]


class ReqwestClient:
    """pyreqwest (Rust reqwest/hyper on its own Tokio runtime), set up as a proxy needs it."""

    def __init__(self) -> None:
        self._client: Any = None
        self._timeout = timedelta(seconds=TIMEOUT)

    async def start(self) -> None:
        from pyreqwest.client import ClientBuilder

        self._client = (
            ClientBuilder().follow_redirects(False).referer(False).gzip(False).brotli(False).zstd(False)
            .deflate(False).http1_lower_case_headers().pool_max_idle_per_host(POOL).no_proxy().build()
        )

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: Body, timeout: float
    ) -> AsyncIterator[UpstreamResponse]:
        # Read-ahead 0: chunks are handed over as they arrive, as the proxy loop asks of
        # every client (pyreqwest's default buffers 64 KiB first).
        request = (
            self._client.request(method, url).headers(_text(headers)).timeout(self._timeout)
            .streamed_read_buffer_limit(0).build_streamed()
        )
        async with request as r:
            yield _ReqwestResponse(r)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
POOL = 256
TIMEOUT = 10.0


class _AiohttpResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status
        self.headers = _raw(response.headers.items())

    async def read_chunk(self) -> bytes | None:
        data, _ = await self._response.content.readchunk()
        return data or None


class AiohttpClient:
    def __init__(self) -> None:
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=POOL, keepalive_timeout=60, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
    ) -> AsyncIterator[UpstreamResponse]:
        # The session-wide timeout applies; a per-request timeout object would add cost
        # the other clients do not pay. Chunks are handed over as they arrive, as the proxy
        # loop below asks of every client.
        async with self._session.request(
            method, url, headers=_text(headers), data=body, allow_redirects=False
        ) as r:
            yield _AiohttpResponse(r)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _HttpxResponse:
    def __init__(self, response: Any) -> None:
        self._chunks: Any = response.aiter_raw()
        self.status: int = response.status_code
        self.headers = _raw(response.headers.items())

    async def read_chunk(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()  # type: ignore[no-any-return]
        except StopAsyncIteration:
            return None


class HttpxClient:
    def __init__(self) -> None:
        self._client: Any = None

    async def start(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        self._client = httpx.AsyncClient(limits=limits, timeout=TIMEOUT, follow_redirects=False)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
    ) -> AsyncIterator[UpstreamResponse]:
        # The session-wide timeout applies; a per-request timeout object would add cost
        # the other clients do not pay. Chunks are handed over as they arrive, as the proxy
        # loop below asks of every client.
        async with self._client.stream(method, url, headers=_text(headers), content=body) as r:
            yield _HttpxResponse(r)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def make_client(name: str) -> UpstreamClient:
    if name == "pyreqwest":
        return ReqwestClient()
    if name == "h1":
        from hotpath.upstream.h1_client import H1UpstreamClient

        return H1UpstreamClient(Timeouts(connect=2, read=TIMEOUT, total=TIMEOUT), PoolConfig(max_idle_per_host=POOL))
    if name == "aiohttp":
        return AiohttpClient()
    if name == "httpx":
        return HttpxClient()
    raise ValueError(f"BENCH_CLIENT must be one of {', '.join(CLIENTS)}, not {name!r}")


_SKIP = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive"})


class ClientProxyApp:
    def __init__(self, client: UpstreamClient, upstream: str) -> None:
        self.client = client
        self.upstream = upstream.rstrip("/")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.client.start()
                else:
                    await self.client.close()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in _SKIP_B]
        try:
            async with self.client.stream(scope["method"], url, headers, None, TIMEOUT) as resp:
                out = [(k, v) for k, v in resp.headers if k not in _SKIP_RESPONSE]
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                chunk = await resp.read_chunk()
                while chunk is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    chunk = await resp.read_chunk()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:  # a benchmark proxy: any upstream failure is a 502
            body = f"upstream error: {type(exc).__name__}".encode()
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


_SKIP_B = frozenset(h.encode() for h in _SKIP)
_SKIP_RESPONSE = frozenset({b"connection", b"transfer-encoding", b"keep-alive"})


def _create() -> ClientProxyApp | None:
    name = os.environ.get("BENCH_CLIENT")
    upstream = os.environ.get("BENCH_UPSTREAM")
    if not name or not upstream:
        return None  # imported for inspection (tests, mypy), not served
    return ClientProxyApp(make_client(name), upstream)


app = _create()
