"""Where a policy's decisions are made: the strategy is chosen once, when the config is built.

``RedisLimits`` decides in Redis, every worker and pod against the same counters, with an
in-process fallback for fail-open policies while Redis is unavailable; ``MemoryLimits``
decides in this process (one worker, no Redis). The plugin makes one call per request,
``decide``, and never asks which strategy runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.rate_limit.limits import CompiledLimit, Decision
from plugins.rate_limit.policy import CostPlan


class LimitBackend:
    """One call per request, plus what the admin API needs; subclasses implement it all."""

    kind = ""

    async def decide(self, keys: Sequence[str], plan: CostPlan) -> Decision | None:
        """The decision for one request; None when none could be made and the policy fails
        closed (Redis unavailable). Never raises for an unavailable Redis."""
        raise NotImplementedError

    async def usage(self, keys: Sequence[str], limits: tuple[CompiledLimit, ...]) -> tuple[
            list[tuple[int, int, int, int]], int]:
        """Per limit (limit, remaining, reset_ms, ttl_ms or -2), and the deciding clock in ms."""
        raise NotImplementedError

    async def forget(self, keys: list[str]) -> int:
        """Delete these keys (one caller's counters); returns how many existed."""
        raise NotImplementedError

    async def forget_prefix(self, prefix: str, pattern: str) -> int:
        """Delete every key under ``prefix`` (``pattern`` is its SCAN glob)."""
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
