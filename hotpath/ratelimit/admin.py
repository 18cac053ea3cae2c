"""Operations for the admin API: one caller's usage, resetting a caller or a whole policy.

Callers are named as in requests (a subject, an API key, a header value, an IP) together
with the kind of key (default: the policy's own); they are hashed exactly as the request
path hashes them. Policy resets SCAN every primary (each Cluster master in turn) for the
policy's keys and delete them one slot at a time, never with a cross-slot command.
"""

from __future__ import annotations

import asyncio
from typing import Any

from coredis.exceptions import NoScriptError

from hotpath.ratelimit.limiter import Limiter
from hotpath.ratelimit.memory import MemoryBackend
from hotpath.ratelimit.policy import CompiledPolicy, caller_id

__all__ = ["UnknownPolicy", "caller_id", "reset_caller", "reset_policy", "usage"]
from hotpath.ratelimit.redis_backend import hash_slot
from hotpath.ratelimit.scripts import PEEK

ADMIN_TIMEOUT = 5.0
SCAN_COUNT = 500


class UnknownPolicy(LookupError):
    """The named policy is not configured."""


def _policy(limiter: Limiter, name: str) -> CompiledPolicy:
    policy = limiter.policies.get(name)
    if policy is None:
        raise UnknownPolicy(name)
    return policy


def _memory(limiter: Limiter) -> MemoryBackend:
    return limiter.memory if limiter.memory is not None else limiter.fallback


async def usage(
    limiter: Limiter, policy_name: str, caller: str, *, kind: str | None = None, tier: str | None = None
) -> dict[str, Any]:
    """Current usage of every limit of ``tier`` (default: the policy's default tier)."""
    policy = _policy(limiter, policy_name)
    plan = policy.tiers.get(tier) if tier else policy.default
    if plan is None:
        raise UnknownPolicy(f"{policy_name} tier {tier}")
    keys = policy.keys(caller_id(kind or policy.key, caller), plan)
    rows: list[tuple[int, int, int, int]]
    if limiter.batcher is not None:
        client = limiter.batcher.client
        argv = [1, 0, *plan.params]
        async with asyncio.timeout(ADMIN_TIMEOUT):
            try:
                reply = await client.evalsha(PEEK.sha, keys, argv)
            except NoScriptError:
                await client.script_load(PEEK.source)
                reply = await client.evalsha(PEEK.sha, keys, argv)
        rows = [tuple(int(x) for x in reply[i : i + 4]) for i in range(1, len(reply), 4)]  # type: ignore[misc]
        now_ms = int(reply[0])
    else:
        rows = _memory(limiter).peek(keys, plan.limits)
        now_ms = _memory(limiter).clock() // 1000
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
    keys = [base + s for s in policy.all_suffixes()]
    deleted = limiter.fallback.delete(keys)
    if limiter.memory is not None:
        return limiter.memory.delete(keys)
    if limiter.batcher is not None:
        async with asyncio.timeout(ADMIN_TIMEOUT):
            # Same hash tag, so one multi-key command is fine on a Cluster too.
            deleted = int(await limiter.batcher.client.delete(keys))
    return deleted


async def reset_policy(limiter: Limiter, policy_name: str) -> int:
    """Forget every caller's usage under the policy; returns keys deleted."""
    policy = _policy(limiter, policy_name)
    prefix = policy.tag_prefix
    if limiter.batcher is None:
        return _memory(limiter).delete_prefix(prefix)
    limiter.fallback.delete_prefix(prefix)
    client = limiter.batcher.client
    deleted = 0
    async with asyncio.timeout(ADMIN_TIMEOUT * 12):
        by_slot: dict[int, list[Any]] = {}
        async for key in client.scan_iter(match=policy.pattern, count=SCAN_COUNT):
            name = key.decode() if isinstance(key, bytes) else str(key)
            by_slot.setdefault(hash_slot(name), []).append(name)
        for keys in by_slot.values():
            for i in range(0, len(keys), SCAN_COUNT):
                deleted += int(await client.delete(keys[i : i + SCAN_COUNT]))
    return deleted
