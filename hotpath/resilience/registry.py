"""The breakers of one worker, for the admin API and ``/health``.

The admin API gets it with ``breaker_registry(runtime)`` and calls ``snapshot()``,
``reset(name)`` or ``reset_all()``. With Redis, a reset is decided in Redis and published,
so it reaches every worker and pod; with the in-process backend it resets this worker only.
"""

from __future__ import annotations

from typing import Any, Protocol

from hotpath.runtime import WorkerRuntime

SINGLETON_KEY = "resilience.breakers"


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
