"""Per-worker shared infrastructure: state backend, telemetry, audit, lifecycle hooks.

Built in each worker after the fork (Granian imports the app per worker), so every client
and background task here belongs to exactly one event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hotpath.config.loader import LoadedConfig
from hotpath.state.shared import SharedState
from observability.audit_event import AuditSink, NullAuditSink
from observability.telemetry import NullTelemetry, Telemetry

T = TypeVar("T")
Hook = Callable[[], Awaitable[None]]


class WorkerRuntime:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        telemetry: Telemetry | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.loaded = loaded
        self.state = SharedState("redis" if loaded.state_backend == "redis" else "memory", loaded.gateway.redis)
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.audit: AuditSink = audit or NullAuditSink()
        self._singletons: dict[str, Any] = {}
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []

    def singleton(self, key: str, factory: Callable[[], T]) -> T:
        """One shared object per worker (a JWKS cache, a limiter batcher), made on first use."""
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
                import logging

                logging.getLogger("gatehouse").exception("shutdown hook failed")
        await self.telemetry.stop()
        await self.state.close()
