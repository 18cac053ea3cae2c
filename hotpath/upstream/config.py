"""``services.<name>``: a service's instances, timeouts, pool, breaker and retries."""

from __future__ import annotations

from typing import Annotated

import msgspec

from hotpath.resilience.config import BreakerConfig, RetryConfig
from hotpath.structs import Seconds, Strict


class Timeouts(Strict, frozen=True, kw_only=True):
    connect: Seconds = 2.0
    # Longest silence from the upstream once the request is sent.
    read: Seconds = 30.0
    # Whole exchange, connect to last response byte (a streamed body included).
    total: Seconds = 60.0


class PoolConfig(Strict, frozen=True, kw_only=True):
    max_idle_per_host: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 256
    idle_timeout: Seconds = 60.0
    # Connections (so in-flight requests) per worker to each instance; None: unbounded.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ServiceConfig(Strict, frozen=True, kw_only=True):
    urls: tuple[str, ...]
    timeouts: Timeouts = Timeouts()
    pool: PoolConfig = PoolConfig()
    # Circuit breaker and retries (docs/resilience.md); absent: none.
    breaker: BreakerConfig | None = None
    retry: RetryConfig | None = None
