"""``UpstreamClient`` on pyreqwest (Rust reqwest/hyper): the measured choice for the data path.

One client per service and worker: its own keep-alive pool, sized by the service's pool
settings. Decompression, redirects and Referer are off: a proxy passes bytes through.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache
from typing import Any

from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response, ResponseBodyReader

from hotpath.config.schema import PoolConfig, Timeouts
from hotpath.upstream.client import (
    Body,
    UpstreamBodyError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeout,
)


class _ReqwestResponse:
    __slots__ = ("_reader", "_response", "status")

    def __init__(self, response: Response) -> None:
        self._response = response
        self._reader: ResponseBodyReader = response.body_reader
        self.status = response.status

    def header_items(self) -> Iterable[tuple[str, str]]:
        return self._response.headers.items()

    async def read_chunk(self) -> bytes | None:
        try:
            chunk = await self._reader.read_chunk()
        except rq.RequestTimeoutError as exc:
            raise UpstreamTimeout(str(exc), phase="read") from exc
        except rq.RequestError as exc:
            raise UpstreamConnectError(str(exc), before_send=False) from exc
        return None if chunk is None else chunk.to_bytes()


class _Exchange:
    """One request/response exchange as an async context manager.

    A plain class rather than ``@asynccontextmanager``: it saves a generator frame and two
    awaits per request on the hot path.
    """

    __slots__ = ("_request",)

    def __init__(self, request: StreamRequest) -> None:
        self._request = request

    async def __aenter__(self) -> UpstreamResponse:
        try:
            return _ReqwestResponse(await self._request.__aenter__())
        except rq.PyreqwestError as exc:
            raise _translate(exc) from exc

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._request.__aexit__(*exc_info)
        except rq.PyreqwestError as exc:
            raise _translate(exc) from exc


def _translate(exc: rq.PyreqwestError) -> Exception:
    """Our exception for a pyreqwest one (see hotpath.upstream.client)."""
    if isinstance(exc, rq.ConnectTimeoutError):
        return UpstreamTimeout(str(exc), phase="connect")
    if isinstance(exc, rq.RequestTimeoutError):
        return UpstreamTimeout(str(exc), phase="total")
    if isinstance(exc, rq.ConnectError):
        return UpstreamConnectError(str(exc), before_send=True)
    body_error = _find_body_error(exc)
    if body_error is not None:
        return body_error
    return UpstreamConnectError(str(exc), before_send=False)


@lru_cache(maxsize=256)
def _delta(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


class ReqwestUpstreamClient:
    def __init__(self, timeouts: Timeouts, pool: PoolConfig) -> None:
        self._builder = (
            ClientBuilder()
            .follow_redirects(False)
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .http1_lower_case_headers()
            .connect_timeout(_delta(timeouts.connect))
            .read_timeout(_delta(timeouts.read))
            .pool_idle_timeout(_delta(pool.idle_timeout))
            .pool_max_idle_per_host(pool.max_idle_per_host)
            .max_connections(pool.max_connections)
            .no_proxy()
        )
        # Built in start(): the Tokio runtime behind it must not exist before Granian forks.
        self._client: Client | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = self._builder.build()

    def stream(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: Body,
        timeout: float,
        read_ahead: int = 0,
    ) -> _Exchange:
        assert self._client is not None, "client used before start()"
        # Read-ahead 0 (the route default): every chunk is handed over as it arrives.
        # pyreqwest's own default buffers up to 64 KiB first, holding server-sent events back.
        builder = (
            self._client.request(method, url)
            .headers(headers)
            .timeout(_delta(timeout))
            .streamed_read_buffer_limit(read_ahead)
        )
        if body is not None:
            builder = builder.body_bytes(body) if isinstance(body, bytes) else builder.body_stream(body)
        return _Exchange(builder.build_streamed())

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _find_body_error(exc: BaseException) -> UpstreamBodyError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, UpstreamBodyError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
