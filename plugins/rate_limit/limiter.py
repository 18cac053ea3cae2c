"""The per-worker limiter: compiled policies, their metric children, and the backend.

One instance per worker (``WorkerRuntime.singleton``), shared by every route's plugin and
by the admin API. The backend is chosen here, once: Redis when the state backend is Redis
(with an in-process fallback for fail-open policies), this process otherwise.
"""

from __future__ import annotations

from typing import Final

from hotpath.runtime import WorkerRuntime
from plugins.rate_limit.backends.base import LimitBackend
from plugins.rate_limit.backends.memory import MemoryLimits, MemoryStore
from plugins.rate_limit.backends.redis import RedisLimits
from plugins.rate_limit.config import RateLimitSettings
from plugins.rate_limit.metrics import Counters
from plugins.rate_limit.policy import CompiledPolicy, compile_policies

SINGLETON_KEY: Final = "rate_limit.limiter"


class Limiter:
    def __init__(self, settings: RateLimitSettings, backend: LimitBackend, *, key_base: str, workers: int) -> None:
        self.settings = settings
        self.backend = backend
        self.key_base = key_base
        self.policies: dict[str, CompiledPolicy] = compile_policies(settings, key_base, workers)
        self.counters: dict[tuple[str, str], Counters] = {
            (p.name, t): Counters(p.name, t) for p in self.policies.values() for t in p.tiers
        }


def choose_backend(runtime: WorkerRuntime, settings: RateLimitSettings) -> LimitBackend:
    state = runtime.state
    store = MemoryStore(max_keys=settings.fallback.max_keys)
    if state.kind != "redis":
        return MemoryLimits(store)
    if state.links is None:
        raise ValueError("the Redis client's credentials cannot be used by the rate limiter's links")
    return RedisLimits(state.redis, state.links, settings.batch, timeout=state.config.command_timeout,
                       fallback=store)


def limiter_for(runtime: WorkerRuntime, settings: RateLimitSettings | None) -> Limiter:
    def make() -> Limiter:
        chosen = settings or RateLimitSettings()
        backend = choose_backend(runtime, chosen)
        limiter = Limiter(chosen, backend, key_base=runtime.state.keys.feature("rl"), workers=runtime.workers)
        runtime.on_startup(backend.start)
        runtime.on_shutdown(backend.close)
        return limiter

    return runtime.singleton(SINGLETON_KEY, make)


def limiter_of(runtime: WorkerRuntime) -> Limiter | None:
    """This worker's limiter, if any route uses rate limiting (for the admin API)."""
    limiter = runtime.get_singleton(SINGLETON_KEY)
    return limiter if isinstance(limiter, Limiter) else None
