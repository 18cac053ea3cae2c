"""A named upstream service: its instances, its pooled client and its resilience policies."""

from __future__ import annotations

import itertools

from hotpath.resilience.contracts import Breaker, NoBreaker, NoRetry, RetryPolicy
from hotpath.upstream.client import UpstreamClient
from hotpath.upstream.config import ServiceConfig


class Service:
    __slots__ = ("_next", "breaker", "client", "config", "instances", "name", "retry")

    def __init__(
        self,
        name: str,
        config: ServiceConfig,
        client: UpstreamClient,
        *,
        breaker: Breaker | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.instances: tuple[str, ...] = tuple(u.rstrip("/") for u in config.urls)
        self.client = client
        self.breaker: Breaker = breaker or NoBreaker()
        self.retry: RetryPolicy = retry or NoRetry()
        # Round-robin without a lock: one event loop per worker.
        self._next = itertools.cycle(self.instances).__next__

    def pick(self) -> str:
        return self._next()
