"""The disconnect watcher: sees a client leave, and never spins on a receive that answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter
from typing import Any

from hotpath.context import RequestContext
from hotpath.proxy import DISCONNECT_WATCH_AFTER, DisconnectWatch


def _ctx(receive: Any) -> RequestContext:
    return RequestContext({}, receive, "GET", "/x", b"", [], "127.0.0.1", "rid", None, perf_counter())


async def _exchange(watch: DisconnectWatch, ctx: RequestContext, seconds: float) -> None:
    watch.enter(ctx)
    try:
        await asyncio.sleep(seconds)
    finally:
        watch.leave(ctx)


async def test_a_receive_that_never_blocks_does_not_freeze_the_loop() -> None:
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise RuntimeError("the watcher spins on receive()")
        return {"type": "http.request", "body": b"", "more_body": False}

    ctx = _ctx(receive)
    await asyncio.wait_for(_exchange(DisconnectWatch(), ctx, 6 * DISCONNECT_WATCH_AFTER), 5)
    assert 1 <= calls <= 8  # about one call per DISCONNECT_WATCH_AFTER once the watch starts
    assert not ctx.client_gone


async def test_a_disconnect_after_other_messages_cancels_the_exchange() -> None:
    left = asyncio.get_running_loop().create_future()
    messages = 0

    async def receive() -> dict[str, Any]:
        nonlocal messages
        messages += 1
        if messages == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        return await left  # blocks, as a server does, until the client leaves

    ctx = _ctx(receive)
    task = asyncio.create_task(_exchange(DisconnectWatch(), ctx, 10))
    await asyncio.sleep(4 * DISCONNECT_WATCH_AFTER)
    left.set_result({"type": "http.disconnect"})
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()
    assert ctx.client_gone
