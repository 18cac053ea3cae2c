"""The disconnect watcher: sees a client leave, and never spins on a receive that answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hotpath.context import RequestContext
from hotpath.proxy import DISCONNECT_WATCH_AFTER, DisconnectWatch
from tests.support.requests import make_ctx


def _ctx(receive: Any) -> RequestContext:
    return make_ctx("GET", "/x", receive=receive)


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


def test_each_exchange_registers_its_own_task_on_any_loop() -> None:
    # The watch remembers its loop to find the running task cheaply; a second task, or
    # another loop (an app started again elsewhere), must still register the right task.
    watch = DisconnectWatch()
    seen: list[tuple[asyncio.Task[Any] | None, asyncio.Task[Any] | None]] = []

    async def one() -> None:
        ctx = _ctx(None)
        watch.enter(ctx)
        seen.append((watch._pending.get(ctx), asyncio.current_task()))
        watch.leave(ctx)

    async def several() -> None:
        await asyncio.gather(one(), one(), one())

    for _ in range(2):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(several())
        finally:
            loop.close()
    assert len(seen) == 6
    assert all(registered is current and current is not None for registered, current in seen)
    assert len({id(current) for _, current in seen}) == 6
