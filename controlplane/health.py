"""``/health``, ``/health/live`` and ``/health/ready``."""

from __future__ import annotations

import os
from typing import Any

from controlplane.lifecycle import DrainState
from hotpath.native.loader import status as native_status
from hotpath.runtime import WorkerRuntime
from hotpath.upstream.service import Service

PING_TIMEOUT = 0.5


class Health:
    def __init__(self, runtime: WorkerRuntime, services: dict[str, Service], drain: DrainState) -> None:
        self._runtime = runtime
        self._services = services
        self._drain = drain

    def live(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "alive", "pid": os.getpid()}

    async def ready(self) -> tuple[int, dict[str, Any]]:
        if self._drain.draining:
            return 503, {"status": "draining"}
        state = self._runtime.state
        if state.kind == "redis" and state.config.required:
            up, _, error = await state.ping(PING_TIMEOUT)
            if not up:
                return 503, {"status": "not_ready", "reason": f"redis unavailable: {error}"}
        return 200, {"status": "ready"}

    async def detail(self) -> tuple[int, dict[str, Any]]:
        state = self._runtime.state
        deps: dict[str, Any] = {}
        degraded = False
        if state.kind == "redis":
            up, latency, error = await state.ping(PING_TIMEOUT)
            deps["redis"] = {
                "status": "up" if up else "down",
                "required": state.config.required,
                "latency_ms": round(latency, 3) if latency is not None else None,
                "error": error,
            }
            degraded = not up
        else:
            deps["state"] = {"status": "in-process", "note": "limits and breakers are local to this process"}
        breakers = {name: svc.breaker.state_name() for name, svc in self._services.items()}
        if any(s in ("open", "half_open") for s in breakers.values()):
            degraded = True
        status = "draining" if self._drain.draining else ("degraded" if degraded else "ok")
        code = 503 if self._drain.draining or (degraded and state.config.required and "redis" in deps
                                               and deps["redis"]["status"] == "down") else 200
        return code, {
            "status": status,
            "pid": os.getpid(),
            "state_backend": state.kind,
            "dependencies": deps,
            "breakers": breakers,
            "native": native_status().as_dict(),
        }
