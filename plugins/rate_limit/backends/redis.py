"""Decisions in Redis, batched: every worker and pod counts against the same keys.

A request's decision is queued on the worker's ``DecisionBatcher`` (``hotpath.redis.batcher``):
the decisions of one event-loop tick travel as one ``EVALSHA decide.lua``. A call carries
each distinct argument tuple (a "plan": a route's cost and a tier's limits) once, and each
decision only its plan's number, so Redis parses a plan once per call, not once per decision.

While Redis is unavailable, a fail-open policy decides in this process on a share of each
limit (``FallbackConfig``), and a fail-closed one gets no decision (the plugin answers 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

from coredis.exceptions import NoScriptError

from hotpath.redis.batcher import Pending, ScriptBatcher
from hotpath.redis.link import Links
from hotpath.redis.resp import bulk_number, hash_slot
from plugins.rate_limit.backends.base import LimitBackend
from plugins.rate_limit.backends.memory import MemoryStore
from plugins.rate_limit.config import BatchConfig
from plugins.rate_limit.limits import CompiledLimit, Decision
from plugins.rate_limit.policy import CostPlan
from plugins.rate_limit.scripts import DECIDE, PEEK

OPERATION: Final = "rate_limit"
PURPOSE: Final = "rate limiting"
REPLY_WIDTH: Final = 6  # allowed, index, limit, remaining, reset_ms, retry_ms
ADMIN_TIMEOUT: Final = 5.0
SCAN_COUNT: Final = 500


def plans_of(batch: list[Pending]) -> tuple[list[tuple[int, ...]], list[int]]:
    """The batch's distinct argument tuples (plans), and each decision's plan number
    (1-based): ``decide.lua`` prepares each plan once per call."""
    numbers: dict[tuple[int, ...], int] = {}
    picks: list[int] = []
    for p in batch:
        number = numbers.get(p.args)
        if number is None:
            number = numbers[p.args] = len(numbers) + 1
        picks.append(number)
    return list(numbers), picks


class DecisionBatcher(ScriptBatcher):
    """``decide.lua`` calls: ``nplans, plan..., pick...`` after the keys; six integers back
    per decision after Redis's time."""

    def __init__(
        self,
        links: Links,
        *,
        timeout: float,
        client: Any = None,
        max_batch: int = 256,
        max_in_flight: int = 1,
        retry_interval: float = 0.5,
        linger: float = 0.0,
        min_batch: int | None = None,
    ) -> None:
        super().__init__(links, DECIDE, operation=OPERATION, purpose=PURPOSE, timeout=timeout, client=client,
                         max_batch=max_batch, max_in_flight=max_in_flight, retry_interval=retry_interval,
                         linger=linger, min_batch=min_batch)
        # Wire form of each distinct plan: a handful per configuration, encoded on first use.
        self._wire_plans: dict[tuple[int, ...], bytes] = {}

    def encode_args(self, batch: list[Pending]) -> tuple[int, list[bytes]]:
        plans, picks = plans_of(batch)
        wire_plans = self._wire_plans
        out: list[bytes] = [bulk_number(len(plans))]
        n_args = 1 + len(picks)
        for args in plans:
            encoded = wire_plans.get(args)
            if encoded is None:
                encoded = wire_plans[args] = b"".join([bulk_number(a) for a in args])
            out.append(encoded)
            n_args += len(args)
        out.extend([bulk_number(i) for i in picks])
        return n_args, out

    def argv(self, batch: list[Pending]) -> list[int]:
        plans, picks = plans_of(batch)
        argv: list[int] = [len(plans)]
        for args in plans:
            argv.extend(args)
        argv.extend(picks)
        return argv

    def resolve(self, batch: list[Pending], reply: Any) -> None:
        # The script's numbers arrive as RESP integers. Read as list[int], compiled code
        # indexes and unboxes them directly (a reply of another shape raises TypeError and
        # fails the batch).
        values: list[int] = reply if isinstance(reply, list) else list(reply)
        now_ms = values[0]
        i = 1
        for p in batch:
            fut = p.future
            if not fut.done():
                fut.set_result(
                    Decision(values[i] == 1, values[i + 1] - 1, values[i + 2], values[i + 3], values[i + 4],
                             values[i + 5], now_ms)
                )
            i += REPLY_WIDTH


class RedisLimits(LimitBackend):
    kind = "redis"

    def __init__(self, client: Any, links: Links, batch: BatchConfig, *, timeout: float,
                 fallback: MemoryStore) -> None:
        self.client = client
        self.batcher = DecisionBatcher(
            links,
            client=client,
            timeout=batch.timeout or timeout,
            max_batch=batch.max_batch,
            max_in_flight=batch.max_in_flight,
            retry_interval=batch.retry_interval,
            linger=batch.linger,
            min_batch=batch.min_batch,
        )
        # Consulted only while Redis is unavailable, for fail-open policies.
        self.fallback = fallback

    async def decide(self, keys: Sequence[str], plan: CostPlan) -> Decision | None:
        fut = self.batcher.submit(keys, plan.args)
        if fut is not None:
            decision: Decision | None = await fut
            if decision is not None:
                return decision
        if not plan.fail_open:
            return None
        decision = self.fallback.decide(keys, plan.fallback, plan.cost)
        decision.fallback = True
        return decision

    async def start(self) -> None:
        await self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    async def usage(self, keys: Sequence[str], limits: tuple[CompiledLimit, ...]) -> tuple[
            list[tuple[int, int, int, int]], int]:
        argv: list[int] = [1, 0, len(limits)]
        for lim in limits:
            argv.extend(lim.params())
        client = self.client
        async with asyncio.timeout(ADMIN_TIMEOUT):
            try:
                reply = await client.evalsha(PEEK.sha, list(keys), argv)
            except NoScriptError:
                await client.script_load(PEEK.source)
                reply = await client.evalsha(PEEK.sha, list(keys), argv)
        rows = [(int(reply[i]), int(reply[i + 1]), int(reply[i + 2]), int(reply[i + 3]))
                for i in range(1, len(reply), 4)]
        return rows, int(reply[0])

    async def forget(self, keys: list[str]) -> int:
        self.fallback.delete(keys)
        async with asyncio.timeout(ADMIN_TIMEOUT):
            # Same hash tag, so one multi-key command is fine on a Cluster too.
            return int(await self.client.delete(keys))

    async def forget_prefix(self, prefix: str, pattern: str) -> int:
        """SCAN every primary (each Cluster master in turn) for the keys and delete them one
        slot at a time, never with a cross-slot command."""
        self.fallback.delete_prefix(prefix)
        client = self.client
        deleted = 0
        async with asyncio.timeout(ADMIN_TIMEOUT * 12):
            by_slot: dict[int, list[Any]] = {}
            async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
                name = key.decode() if isinstance(key, bytes) else str(key)
                by_slot.setdefault(hash_slot(name), []).append(name)
            for keys in by_slot.values():
                for i in range(0, len(keys), SCAN_COUNT):
                    deleted += int(await client.delete(keys[i : i + SCAN_COUNT]))
        return deleted
