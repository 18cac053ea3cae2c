"""The data-path HTTP client interface.

The proxy speaks only to this interface, so the library behind it can be replaced after
a measurement without touching the hot path. Exceptions are ours: the proxy maps
``UpstreamTimeout`` to 504 and ``UpstreamConnectError`` to 502/503, whatever library
raised them underneath.

Hierarchy::

    UpstreamError
    ├── UpstreamConnectError   refused, reset, DNS, TLS: the request may not have arrived
    ├── UpstreamTimeout        connect, read or total deadline passed
    └── UpstreamBodyError      the client's request body failed mid-stream (see .cause)
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class UpstreamError(Exception):
    pass


class UpstreamConnectError(UpstreamError):
    def __init__(self, message: str, *, before_send: bool) -> None:
        super().__init__(message)
        # True when the request certainly never reached the upstream (safe to retry anything).
        self.before_send = before_send


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase  # "connect", "read" or "total"


class UpstreamBodyError(UpstreamError):
    """Reading the client's request body failed; ``cause`` is the original exception."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class UpstreamResponse(Protocol):
    status: int
    # As received: names lowercased, values the upstream's bytes untouched.
    headers: list[tuple[bytes, bytes]]

    async def read_chunk(self) -> bytes | None:
        """Next body chunk as it arrived, or None at the end."""


Body = bytes | AsyncIterable[bytes] | None


class UpstreamClient(Protocol):
    def stream(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        """Send the request; the context yields once the response head has arrived.

        ``headers`` go out byte for byte, so no name or value may hold a CR or LF (the
        server's parser refuses them in client headers; ``RequestHeaderPolicy`` checks the
        ones plugins add). The client adds Host and the body's framing.
        ``timeout`` bounds the whole exchange, the last body byte included.
        """

    async def start(self) -> None:
        """Create connections' runtime; called in the worker's lifespan startup."""

    async def close(self) -> None: ...
