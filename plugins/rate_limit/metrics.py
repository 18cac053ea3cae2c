"""The rate limiter's metric family, and the children one (policy, tier) counts in.

Outcomes counted in ``gatehouse_rate_limit_decisions{policy,tier,outcome}``: ``allowed``,
``limited``, ``fail_open`` (Redis unavailable, admitted by the fallback),
``fallback_limited`` (Redis unavailable, refused by the fallback), ``fail_closed`` (Redis
unavailable, answered 503).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from hotpath.deferred import DeferredCounter, deferred

RATE_LIMIT_DECISIONS: Final = Counter(
    "gatehouse_rate_limit_decisions",
    "Rate-limit decisions; outcome is allowed, limited, fail_open (Redis unavailable, admitted by the "
    "in-process fallback) or fail_closed (Redis unavailable, refused).",
    ("policy", "tier", "outcome"),
)


class Counters:
    """The metric children of one (policy, tier), resolved once."""

    __slots__ = ("allowed", "fail_closed", "fail_open", "fallback_limited", "limited")

    def __init__(self, policy: str, tier: str) -> None:
        # One increment per request: counted in process, published in batches.
        family = RATE_LIMIT_DECISIONS
        self.allowed: DeferredCounter = deferred(family.labels(policy, tier, "allowed"))
        self.limited: DeferredCounter = deferred(family.labels(policy, tier, "limited"))
        self.fail_open: DeferredCounter = deferred(family.labels(policy, tier, "fail_open"))
        self.fallback_limited: DeferredCounter = deferred(family.labels(policy, tier, "fallback_limited"))
        self.fail_closed: DeferredCounter = deferred(family.labels(policy, tier, "fail_closed"))

    def count(self, allowed: bool, fallback: bool) -> str:
        """Counts one decision; returns its outcome label."""
        if fallback:
            if allowed:
                self.fail_open.inc()
                return "fail_open"
            self.fallback_limited.inc()
            return "fallback_limited"
        if allowed:
            self.allowed.inc()
            return "allowed"
        self.limited.inc()
        return "limited"
