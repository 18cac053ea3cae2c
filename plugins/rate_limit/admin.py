"""Operations for the admin API: one caller's usage, resetting a caller or a whole policy.

Callers are named as in requests (a subject, a header value, an IP) together
with the kind of key (default: the policy's own); they are hashed exactly as the request
path hashes them. The backend does the work (``LimitBackend.usage``, ``forget``,
``forget_prefix``), in Redis or in this process.
"""

from __future__ import annotations

from typing import Any

from plugins.rate_limit.limiter import Limiter
from plugins.rate_limit.policy import CompiledPolicy, caller_id

__all__ = ["UnknownPolicy", "caller_id", "reset_caller", "reset_policy", "usage"]


class UnknownPolicy(LookupError):
    """The named policy is not configured."""


def _policy(limiter: Limiter, name: str) -> CompiledPolicy:
    policy = limiter.policies.get(name)
    if policy is None:
        raise UnknownPolicy(name)
    return policy


async def usage(
    limiter: Limiter, policy_name: str, caller: str, *, kind: str | None = None, tier: str | None = None
) -> dict[str, Any]:
    """Current usage of every limit of ``tier`` (default: the policy's default tier)."""
    policy = _policy(limiter, policy_name)
    plan = policy.tiers.get(tier) if tier else policy.default
    if plan is None:
        raise UnknownPolicy(f"{policy_name} tier {tier}")
    keys = policy.keys(caller_id(kind or policy.key, caller), plan)
    rows, now_ms = await limiter.backend.usage(keys, plan.limits)
    return {
        "policy": policy.name,
        "tier": plan.name,
        "limits": [
            {
                "name": lim.name,
                "limit": row[0],
                "remaining": row[1],
                "reset": -(-(now_ms + row[2]) // 1000),
                "ttl_ms": row[3],
            }
            for lim, row in zip(plan.limits, rows, strict=True)
        ],
    }


async def reset_caller(limiter: Limiter, policy_name: str, caller: str, *, kind: str | None = None) -> int:
    """Forget one caller's usage under every tier of the policy; returns keys deleted."""
    policy = _policy(limiter, policy_name)
    base = f"{policy.tag_prefix}{caller_id(kind or policy.key, caller)}}}"
    return await limiter.backend.forget([base + s for s in policy.all_suffixes()])


async def reset_policy(limiter: Limiter, policy_name: str) -> int:
    """Forget every caller's usage under the policy; returns keys deleted."""
    policy = _policy(limiter, policy_name)
    return await limiter.backend.forget_prefix(policy.tag_prefix, policy.pattern)
