"""The breakers and retry policies of one worker's services: attached when the gateway is
built, listed and reset by the admin API and ``/health``.

With the Redis backend, breakers are ``SharedBreaker`` mirrors fed by one ``BreakerHub`` per
worker (started and stopped with the worker's lifespan); with the in-process backend they
are ``LocalBreaker``. The admin API gets the registry with ``breaker_registry(runtime)`` and
calls ``snapshot()``, ``reset(name)`` or ``reset_all()``. With Redis, a reset is decided in
Redis and published, so it reaches every worker and pod; in process it resets this worker.
"""

from __future__ import annotations

from typing import Any, Protocol

from hotpath.resilience.hub import BreakerHub
from hotpath.resilience.local import LocalBreaker
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.retry import ServiceRetry
from hotpath.runtime import WorkerRuntime
from hotpath.upstream.service import Service

SINGLETON_KEY = "resilience.breakers"
HUB_KEY = "resilience.hub"
# A probe is given the service's whole exchange time, and this much more, to report.
PROBE_GRACE = 1.0


class ManagedBreaker(Protocol):
    name: str

    def state_name(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    async def reset(self) -> None: ...


class BreakerRegistry:
    def __init__(self) -> None:
        self._breakers: dict[str, ManagedBreaker] = {}

    def add(self, breaker: ManagedBreaker) -> None:
        self._breakers[breaker.name] = breaker

    def names(self) -> list[str]:
        return sorted(self._breakers)

    def get(self, name: str) -> ManagedBreaker | None:
        return self._breakers.get(name)

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per configured breaker: service, state, backend, retry_after, ..."""
        return [self._breakers[n].describe() for n in sorted(self._breakers)]

    async def reset(self, name: str) -> bool:
        """Close one service's breaker; False if the service has none. Raises
        ``ConnectionError`` (an ``OSError``) when Redis could not be reached."""
        breaker = self._breakers.get(name)
        if breaker is None:
            return False
        await breaker.reset()
        return True

    async def reset_all(self) -> int:
        """Close every breaker; all are attempted even if Redis fails for some, then the
        first ``ConnectionError`` is raised."""
        failed: ConnectionError | None = None
        for breaker in self._breakers.values():
            try:
                await breaker.reset()
            except ConnectionError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return len(self._breakers)


def breaker_registry(runtime: WorkerRuntime) -> BreakerRegistry:
    return runtime.singleton(SINGLETON_KEY, BreakerRegistry)


def _hub(runtime: WorkerRuntime) -> BreakerHub:
    existing = runtime.get_singleton(HUB_KEY)
    if isinstance(existing, BreakerHub):
        return existing
    state = runtime.state
    hub = BreakerHub(
        state.redis,
        prefix=state.keys.feature("cb"),
        audit=runtime.audit,
        command_timeout=state.config.command_timeout,
    )
    runtime.singleton(HUB_KEY, lambda: hub)
    runtime.on_startup(hub.start)
    runtime.on_shutdown(hub.stop)
    return hub


def attach_resilience(service: Service, runtime: WorkerRuntime) -> None:
    cfg = service.config
    if cfg.retry is not None:
        service.retry = ServiceRetry(service.name, cfg.retry)
    if cfg.breaker is None:
        return
    policy = BreakerPolicy(cfg.breaker, default_probe_timeout=cfg.timeouts.total + PROBE_GRACE)
    if runtime.state.kind == "redis":
        shared = _hub(runtime).add(service.name, policy)
        service.breaker = shared
        breaker_registry(runtime).add(shared)
    else:
        local = LocalBreaker(service.name, policy, audit=runtime.audit)
        service.breaker = local
        breaker_registry(runtime).add(local)

