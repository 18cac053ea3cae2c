"""Reading the client's request body: whole (small, replayable) or as a stream.

Its own module because the stream is an async generator, which mypyc cannot compile: the
proxy that uses it is compiled (see hotpath/native), this stays interpreted.

A plugin that must see the whole body before the request goes on (a JSON Schema check)
reads it with ``read_body``; the proxy then forwards exactly those bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from hotpath.context import BodyTap, RequestContext
from hotpath.errors import GatewayError
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


async def read_body(ctx: RequestContext, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes, kept in ``ctx.body`` so the proxy
    forwards these bytes. Raises ``BodyTooLarge`` (a declared or actual size over the limit)
    or ``ClientGone``."""
    if ctx.body is not None:
        return ctx.body
    data = b""
    if ctx.body_length:
        if ctx.body_length > limit:
            raise BodyTooLarge()
        data = await read_whole(ctx.receive, limit)
    ctx.bytes_in = len(data)
    ctx.body = data
    return data


def finish_taps(taps: Sequence[BodyTap], complete: bool) -> None:
    """``finish`` on every tap; a refusal (``GatewayError``) from one is raised after all ran."""
    refusal: GatewayError | None = None
    for tap in taps:
        try:
            tap.finish(complete)
        except GatewayError as exc:
            refusal = refusal or exc
    if refusal is not None:
        raise refusal


async def stream_body(ctx: RequestContext, limit: int) -> AsyncIterator[bytes]:
    receive = ctx.receive
    taps = ctx.body_taps or ()
    total = 0
    finished = False
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
                    tap.feed(chunk)  # may refuse the body before this chunk goes upstream
                yield chunk
            if not msg.get("more_body", False):
                # Before returning, so a refusal at the end still keeps the last chunk back.
                finished = True
                finish_taps(taps, True)
                return
    except GatewayError as refused:
        raise UpstreamBodyError(refused) from None
    finally:
        if not finished:
            for tap in taps:
                tap.finish(False)
