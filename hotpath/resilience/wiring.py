"""Attaches breakers and retry policies to services when a worker builds its gateway.

Called by ``hotpath.build`` for every service. With the Redis backend,
breakers are ``SharedBreaker`` mirrors fed by one ``BreakerHub`` per worker (started and
stopped with the worker's lifespan); with the in-process backend they are ``LocalBreaker``.
"""

from __future__ import annotations

from hotpath.resilience.hub import BreakerHub
from hotpath.resilience.local import LocalBreaker
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.registry import breaker_registry
from hotpath.resilience.retry import ServiceRetry
from hotpath.runtime import WorkerRuntime
from hotpath.upstream.service import Service

HUB_KEY = "resilience.hub"
# A probe is given the service's whole exchange time, and this much more, to report.
PROBE_GRACE = 1.0


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

