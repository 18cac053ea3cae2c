"""Request bodies: read whole for a plugin (kept for the proxy), and streamed past taps that
may refuse them before a chunk, or the end, goes upstream."""

from __future__ import annotations

from typing import Any

import pytest

from hotpath.context import BodyTap, RequestContext
from hotpath.errors import GatewayError, bad_request
from hotpath.request_body import BodyTooLarge, read_body, stream_body
from hotpath.upstream.client import UpstreamBodyError


def ctx_with(chunks: list[bytes], declared: int) -> RequestContext:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"method": "POST", "query_string": b"", "headers": []}
    ctx = RequestContext(scope, receive, [], peer="p", client_ip="p", request_id="r", correlation_id=None, started=0.0)
    ctx.body_length = declared
    return ctx


class Refuser(BodyTap):
    def __init__(self, on_chunk: int | None = None, at_end: bool = False) -> None:
        self.on_chunk, self.at_end = on_chunk, at_end
        self.fed = 0
        self.finished: list[bool] = []

    def feed(self, chunk: bytes) -> None:
        self.fed += 1
        if self.fed == self.on_chunk:
            raise bad_request("refused mid-stream")

    def finish(self, complete: bool) -> None:
        self.finished.append(complete)
        if complete and self.at_end:
            raise bad_request("refused at the end")


async def test_read_body_keeps_the_bytes_and_refuses_over_the_limit() -> None:
    ctx = ctx_with([b"ab", b"cd"], -1)
    assert await read_body(ctx, 10) == b"abcd"
    assert ctx.body == b"abcd" and ctx.bytes_in == 4
    assert await read_body(ctx, 10) == b"abcd"  # read once
    with pytest.raises(BodyTooLarge):
        await read_body(ctx_with([b"x" * 11], 11), 10)
    with pytest.raises(BodyTooLarge):
        await read_body(ctx_with([b"x" * 6, b"x" * 6], -1), 10)


async def _drain(ctx: RequestContext) -> list[bytes]:
    return [chunk async for chunk in stream_body(ctx, 1000)]


@pytest.mark.parametrize(("tap", "forwarded"), [(Refuser(on_chunk=2), [b"a"]), (Refuser(at_end=True), [b"a", b"b"])])
async def test_a_tap_refuses_before_the_chunk_or_the_end_goes_upstream(tap: Refuser, forwarded: list[bytes]) -> None:
    ctx = ctx_with([b"a", b"b"], -1)
    ctx.tap_body(tap)
    got: list[bytes] = []
    with pytest.raises(UpstreamBodyError) as caught:
        async for chunk in stream_body(ctx, 1000):
            got.append(chunk)  # noqa: PERF401  (the chunks before the refusal are the point)
    assert isinstance(caught.value.cause, GatewayError) and caught.value.cause.status == 400
    assert got == forwarded
    assert len(tap.finished) == 1


async def test_taps_that_accept_see_every_chunk_and_finish_once() -> None:
    ctx = ctx_with([b"a", b"b"], -1)
    tap = Refuser()
    ctx.tap_body(tap)
    assert await _drain(ctx) == [b"a", b"b"]
    assert tap.fed == 2 and tap.finished == [True]
