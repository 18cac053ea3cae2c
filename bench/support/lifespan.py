"""Run an ASGI app's lifespan (or a client's) in one long-lived task, as a server does.

coredis binds a client's connection pool to the task that enters it, so the app must be
started, served and stopped with its startup task still alive: a task here starts the
app, then waits until ``stop`` while the benchmarks drive requests on the same loop.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Lifespan:
    def __init__(self, loop: asyncio.AbstractEventLoop, app: Any, *, stop: str = "stop") -> None:
        """``app`` has ``async start()`` and an async stop method named by ``stop``."""
        self._loop = loop
        self._app = app
        self._stop_name = stop
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = self._loop
        started: asyncio.Future[None] = loop.create_future()

        async def owner() -> None:
            await self._app.start()
            started.set_result(None)
            try:
                await self._stop.wait()
            finally:
                await getattr(self._app, self._stop_name)()

        self._task = loop.create_task(owner())
        loop.run_until_complete(asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED))
        if not started.done():
            started.cancel()
            self._task.result()  # raises the startup error
            raise RuntimeError("the app's lifespan ended during startup")

    def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        self._loop.run_until_complete(self._task)
        self._task = None
