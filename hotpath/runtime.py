"""Per-worker shared infrastructure: state backend, telemetry, audit, lifecycle hooks.

Built in each worker after the fork (Granian imports the app per worker), so every client
and background task here belongs to exactly one event loop. Plugins receive it through
``PluginSetup`` and keep what they need; nothing here is looked up per request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hotpath.audit import AuditSink, NullAuditSink
from hotpath.redis.state import SharedState
from hotpath.telemetry import NullTelemetry, Telemetry

T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]

log = logging.getLogger("gatehouse")


class WorkerRuntime:
    def __init__(
        self,
        state: SharedState,
        *,
        workers: int = 1,
        telemetry: Telemetry | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.state = state
        # Worker processes of this gateway: a fallback that decides alone divides by it.
        self.workers = workers
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.audit: AuditSink = audit or NullAuditSink()
        self._singletons: dict[str, Any] = {}
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []

    def singleton(self, key: str, factory: Callable[[], T]) -> T:
        """One shared object per worker (a JWKS cache, a limiter backend), made on first use."""
        if key not in self._singletons:
            self._singletons[key] = factory()
        value: T = self._singletons[key]
        return value

    def get_singleton(self, key: str) -> Any:
        return self._singletons.get(key)

    def on_startup(self, hook: Hook) -> None:
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self._shutdown.append(hook)

    async def start(self) -> None:
        await self.state.start()
        await self.telemetry.start()
        for hook in self._startup:
            await hook()

    async def stop(self) -> None:
        for hook in reversed(self._shutdown):
            try:
                await hook()
            except Exception:  # one failing hook must not keep the rest from closing
                log.exception("shutdown hook failed")
        await self.telemetry.stop()
        await self.state.close()
