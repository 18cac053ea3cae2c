"""The per-worker limiter: compiled policies, the chosen backend and the fallback.

One instance per worker (``WorkerRuntime.singleton``), shared by every route's plugin.
The strategy is fixed when it is built: Redis when the state backend is Redis (with an
in-process fallback for fail-open policies), the in-process backend otherwise.

Outcomes counted in ``gatehouse_rate_limit_decisions{policy,tier,outcome}``:
``allowed``, ``limited``, ``fail_open`` (Redis unavailable, admitted by the fallback),
``fallback_limited`` (Redis unavailable, refused by the fallback), ``fail_closed``
(Redis unavailable, answered 503).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from hotpath.ratelimit.config import RateLimitSettings
from hotpath.ratelimit.limits import CompiledLimit, Decision
from hotpath.ratelimit.memory import Clock, MemoryBackend, system_clock
from hotpath.ratelimit.policy import CompiledPolicy, TierPlan, compile_policies
from hotpath.ratelimit.redis_backend import RedisBatcher
from hotpath.state.cluster_links import ClusterLinks
from hotpath.state.resp import RespLink
from hotpath.state.shared import is_cluster
from observability.deferred_counters import DeferredCounter, deferred
from observability.metrics import RATE_LIMIT_DECISIONS

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime

SINGLETON_KEY: Final = "rate_limit.limiter"
OUTCOMES: Final = ("allowed", "limited", "fail_open", "fallback_limited", "fail_closed")


class Counters:
    """The metric children of one (policy, tier), resolved once."""

    __slots__ = OUTCOMES

    def __init__(self, policy: str, tier: str) -> None:
        # One increment per request: counted in process, published in batches. Typed
        # attributes, not setattr in a loop: compiled, ``counters.allowed.inc()`` is then a
        # native call, where an ``Any`` attribute (or ``getattr`` by name) was a generic one.
        family = RATE_LIMIT_DECISIONS
        self.allowed: DeferredCounter = deferred(family.labels(policy, tier, "allowed"))
        self.limited: DeferredCounter = deferred(family.labels(policy, tier, "limited"))
        self.fail_open: DeferredCounter = deferred(family.labels(policy, tier, "fail_open"))
        self.fallback_limited: DeferredCounter = deferred(family.labels(policy, tier, "fallback_limited"))
        self.fail_closed: DeferredCounter = deferred(family.labels(policy, tier, "fail_closed"))

    def decided(self, allowed: bool) -> str:
        """Counts a decision of the limiter; returns its outcome label."""
        if allowed:
            self.allowed.inc()
            return "allowed"
        self.limited.inc()
        return "limited"

    def fell_back(self, allowed: bool) -> str:
        """Counts a fail-open decision taken in process while Redis is unavailable."""
        if allowed:
            self.fail_open.inc()
            return "fail_open"
        self.fallback_limited.inc()
        return "fallback_limited"


class Limiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        kind: str,
        key_base: str,
        workers: int,
        redis: Any = None,
        link: RespLink | None = None,
        cluster_links: ClusterLinks | None = None,
        cluster: bool = False,
        timeout: float = 0.1,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.kind = kind
        self.policies: dict[str, CompiledPolicy] = compile_policies(settings, key_base, workers)
        self.key_base = key_base
        self.counters: dict[tuple[str, str], Counters] = {
            (p.name, t): Counters(p.name, t) for p in self.policies.values() for t in p.tiers
        }
        max_keys = settings.fallback.max_keys
        self.batcher: RedisBatcher | None = None
        self.memory: MemoryBackend | None = None
        if kind == "redis":
            batch = settings.batch
            self.batcher = RedisBatcher(
                redis,
                cluster=cluster,
                timeout=batch.timeout or timeout,
                max_batch=batch.max_batch,
                max_in_flight=batch.max_in_flight,
                retry_interval=batch.retry_interval,
                linger=batch.linger,
                min_batch=batch.min_batch,
                link=link,
                cluster_links=cluster_links,
            )
        else:
            self.memory = MemoryBackend(clock, max_keys)
        # Only consulted while Redis is unavailable, for fail-open policies.
        self.fallback = MemoryBackend(clock, max_keys)

    @classmethod
    def for_runtime(cls, runtime: WorkerRuntime, settings: RateLimitSettings | None) -> Limiter:
        def make() -> Limiter:
            state = runtime.state
            limiter = cls(
                settings or RateLimitSettings(),
                kind=state.kind,
                key_base=state.keys.feature("rl"),
                workers=runtime.loaded.gateway.server.workers,
                redis=state.redis,
                link=state.link,
                cluster_links=state.cluster_links,
                cluster=state.kind == "redis" and is_cluster(state.config),
                timeout=state.config.command_timeout,
            )
            runtime.on_startup(limiter.start)
            runtime.on_shutdown(limiter.close)
            return limiter

        return runtime.singleton(SINGLETON_KEY, make)

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    def decide_fallback(self, keys: Sequence[str], plan: TierPlan, cost: int) -> Decision:
        return self.fallback.decide(keys, plan.fallback, cost)

    def decide_local(self, keys: Sequence[str], limits: tuple[CompiledLimit, ...], cost: int) -> Decision:
        assert self.memory is not None
        return self.memory.decide(keys, limits, cost)


def limiter_of(runtime: WorkerRuntime) -> Limiter | None:
    """This worker's limiter, if any route uses rate limiting (for the admin API)."""
    limiter = runtime.get_singleton(SINGLETON_KEY)
    return limiter if isinstance(limiter, Limiter) else None
