"""Per-worker machinery behind the shared breakers: the script, the flusher, the pub/sub
listener and the fallback recovery.

- **Flusher**: outcomes gathered by each breaker are sent every ``flush_interval`` (the
  shortest configured), one script call per breaker with outcomes; nothing runs while idle.
- **Listener**: one pub/sub subscription per worker to the channel every transition is
  published on; after each (re)subscription every breaker is synced, so nothing published
  while disconnected is missed.
- **Maintenance**: every second, breakers in fallback try Redis again, and while the
  listener is down every breaker is synced instead.

Every Redis call has a timeout. A failed call puts that breaker in fallback (Redis Cluster
can lose one slot's node and not the others); it is counted in ``gatehouse_redis_errors``.
A transition is audited only by the worker whose script call performed it, so each one is
reported once cluster-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from time import perf_counter
from typing import Any, Final

from hotpath import metrics as m
from hotpath.audit import AuditSink
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.reporting import emit_transition
from hotpath.resilience.scripts import BREAKER
from hotpath.resilience.shared import Coordinator, Reply, SharedBreaker

log: Final = logging.getLogger("gatehouse.breaker")

MAINTENANCE_INTERVAL: Final = 1.0
# Background calls may wait a little longer than admission-path ones before giving up.
MIN_CALL_TIMEOUT: Final = 0.25
STOP_FLUSH_TIMEOUT: Final = 1.0


class BreakerHub(Coordinator):
    def __init__(self, redis: Any, *, prefix: str, audit: AuditSink, command_timeout: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self.channel = f"{prefix}:events"
        self._script = redis.register_script(BREAKER)
        self._audit = audit
        self._timeout = max(command_timeout, MIN_CALL_TIMEOUT)
        self._token_prefix = f"{secrets.token_hex(6)}."
        self.breakers: dict[str, SharedBreaker] = {}
        self._dirty: list[SharedBreaker] = []
        self._wake = asyncio.Event()
        self._interval = 1.0
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._subscribed = False
        self._errors = m.REDIS_ERRORS.labels("breaker")
        self._latency = m.REDIS_LATENCY.labels("breaker")
        self._batch = m.REDIS_BATCH_SIZE.labels("breaker")

    def add(self, name: str, policy: BreakerPolicy) -> SharedBreaker:
        breaker = SharedBreaker(
            name,
            policy,
            self,
            key=f"{self._prefix}:{{{name}}}",
            channel=self.channel,
            token_prefix=self._token_prefix,
            audit=self._audit,
        )
        self.breakers[name] = breaker
        self._interval = min(self._interval, policy.flush_interval)
        return breaker

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.sync_all()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flush_loop(), name="breaker-flush"),
            loop.create_task(self._listen_loop(), name="breaker-listen"),
            loop.create_task(self._maintenance_loop(), name="breaker-maintenance"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        # Outcomes still gathered are worth sending: another worker or pod carries on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_FLUSH_TIMEOUT):
                await self.flush()
                if self._inflight:
                    await asyncio.gather(*self._inflight, return_exceptions=True)

    # -- calls ----------------------------------------------------------------------------
    async def call(
        self, breaker: SharedBreaker, op: str, arg1: str = "", arg2: bytes | str = b""
    ) -> Reply | None:
        """Run one script operation and apply its reply; None if Redis failed (the breaker
        is then in fallback)."""
        started = perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._script(keys=[breaker.key], args=[op, *breaker.args, arg1, arg2])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ExceptionGroup, timeouts and connection errors alike
            self._errors.inc()
            # Log text, not the exception: a kept record would keep its frames alive.
            log.debug("breaker %s: %s failed: %s", breaker.name, op, repr(exc))
            breaker.enter_fallback(arg2 if op == "record" and isinstance(arg2, bytes) else b"")
            return None
        self._latency.observe(perf_counter() - started)
        reply = Reply(raw)
        if breaker.in_fallback:
            breaker.leave_fallback(reply.state, reply.epoch, reply.open_left)
        else:
            breaker.apply(reply.state, reply.epoch, reply.open_left)
        if reply.transition in ("opened", "closed") and reply.old_state != reply.state:
            emit_transition(self._audit, breaker.name, reply.old_state, reply.state, reply.reason, "cluster")
        return reply

    @property
    def subscribed(self) -> bool:
        """True while the pub/sub listener is connected (transitions arrive as they happen)."""
        return self._subscribed

    async def probe(self, breaker: SharedBreaker, token: str) -> Reply | None:
        return await self.call(breaker, "probe", token)

    def probe_done(self, breaker: SharedBreaker, token: str, result: str) -> None:
        """Report a probe's result now (not batched: the half-open episode waits on it)."""
        self._spawn(self.call(breaker, "done", token, result))

    async def reset(self, breaker: SharedBreaker) -> Reply | None:
        return await self.call(breaker, "reset")

    async def sync(self, breaker: SharedBreaker) -> Reply | None:
        return await self.call(breaker, "sync")

    async def sync_all(self) -> None:
        if self.breakers:
            await asyncio.gather(*(self.sync(b) for b in self.breakers.values()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # -- flushing -----------------------------------------------------------------------
    def dirty(self, breaker: SharedBreaker) -> None:
        self._dirty.append(breaker)
        if not self._wake.is_set():
            self._wake.set()

    async def flush(self) -> None:
        batch, self._dirty = self._dirty, []
        calls = []
        for breaker in batch:
            epoch, seq, _ = breaker.take_batch()
            if seq:
                self._batch.observe(len(seq))
                calls.append(self.call(breaker, "record", str(epoch), seq))
        if calls:
            await asyncio.gather(*calls)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the flusher die
                log.exception("breaker flush failed")

    # -- pub/sub ------------------------------------------------------------------------
    def on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        try:
            name, state, epoch, open_left_ms, _old = text.split(" ")
            breaker = self.breakers.get(name)
            if breaker is not None and not breaker.in_fallback:
                breaker.apply(int(state), int(epoch), int(open_left_ms) / 1000.0)
        except ValueError:
            log.warning("ignoring a malformed breaker message: %r", text[:200])

    async def _listen_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                # retry_policy=None: reconnects are ours, so every one is followed by a sync.
                async with self._redis.pubsub(
                    channels=[self.channel], ignore_subscribe_messages=True, retry_policy=None,
                    subscription_timeout=max(self._timeout, 1.0),
                ) as pubsub:
                    self._subscribed = True
                    await self.sync_all()
                    backoff = 0.1
                    async for message in pubsub:
                        if message["type"] == "message":
                            self.on_message(message["data"])
            except asyncio.CancelledError:
                self._subscribed = False
                raise
            except Exception as exc:
                if self._subscribed:
                    log.warning("breaker pub/sub lost: %s", repr(exc))
                self._errors.inc()
            self._subscribed = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            try:
                stale = [b for b in self.breakers.values() if b.in_fallback or not self._subscribed]
                if stale:
                    await asyncio.gather(*(self.sync(b) for b in stale))
            except Exception:
                log.exception("breaker maintenance failed")
