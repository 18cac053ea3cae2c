"""Reading the client's request body: whole (small, replayable) or as a stream.

Its own module because the stream is an async generator, which mypyc cannot compile: the
proxy that uses it is compiled (see hotpath/native), this stays interpreted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hotpath.context import RequestContext
from hotpath.upstream.client import UpstreamBodyError


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected; nothing more can be sent."""


async def read_whole(receive: Any, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk = msg.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge()
            parts.append(chunk)
        if not msg.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def stream_body(ctx: RequestContext, limit: int) -> AsyncIterator[bytes]:
    receive = ctx.receive
    taps = ctx.body_taps or ()
    total = 0
    complete = False
    try:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise UpstreamBodyError(ClientGone())
            chunk = msg.get("body", b"")
            if chunk:
                total += len(chunk)
                ctx.bytes_in = total
                if total > limit:
                    raise UpstreamBodyError(BodyTooLarge())
                for tap in taps:
                    tap.feed(chunk)
                yield chunk
            if not msg.get("more_body", False):
                complete = True
                return
    finally:
        for tap in taps:
            tap.finish(complete)
