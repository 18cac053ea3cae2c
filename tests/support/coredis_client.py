"""coredis clients in tests, entered the way the gateway enters them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def entered(client: Any) -> AsyncIterator[Any]:
    """Enter a coredis client in a task of its own, as the gateway's lifespan task does.

    coredis binds its pool to the task that enters it, and pytest-asyncio sets up and tears
    down a fixture in different tasks; a holder task keeps both ends in one task.
    """
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with client:
                ready.set_result(None)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    task = asyncio.create_task(hold())
    await ready
    try:
        yield client
    finally:
        done.set()
        with contextlib.suppress(Exception):
            await task
