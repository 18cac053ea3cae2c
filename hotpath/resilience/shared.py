"""A service's breaker as one worker sees it: a local mirror of the state in Redis.

``admit()`` reads the mirror only. While closed it returns the epoch's permit and does no
I/O; outcomes are appended to a batch (one byte each) that the worker's ``BreakerHub``
sends to ``breaker.lua`` every ``flush_interval``. Transitions are decided in Redis and come
back in the script's reply or over pub/sub, within milliseconds, to every worker.

Half-open, a caller gets a ``SharedProbe`` whose ``ready()`` asks Redis for a probe lease;
the script grants exactly ``probes`` of them cluster-wide. A worker never has more lease
requests outstanding than there are probes, and after a refusal it refuses locally until
a lease could have expired, so a crowd of callers costs a handful of Redis calls.

When a Redis call fails, the breaker switches to its in-process ``LocalBreaker`` (same
semantics, seeded with the last known state) until the hub reaches Redis again; every
decision taken meanwhile is counted in ``gatehouse_breaker_local_fallback``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from hotpath.audit import AuditSink
from hotpath.resilience.contracts import Breaker, Outcome, Permit
from hotpath.resilience.local import LocalBreaker
from hotpath.resilience.machine import CLOSED, HALF_OPEN, OPEN, PROBE_CANCELLED, STATE_NAMES
from hotpath.resilience.permits import EpochPermit, Rejection, verdict
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.reporting import BreakerMetrics

log: Final = logging.getLogger("gatehouse.breaker")

Clock = Callable[[], float]

_S: Final = ord("S")
_F: Final = ord("F")
# After a refused probe request, ask Redis again no sooner than this (or the next lease expiry).
PROBE_RECHECK: Final = 0.5


class Reply:
    """breaker.lua's answer, decoded."""

    __slots__ = ("epoch", "granted", "lease_wait", "old_state", "open_left", "probes_free", "reason", "state",
                 "transition")

    def __init__(self, raw: list[Any]) -> None:
        self.state = int(raw[0])
        self.epoch = int(raw[1])
        self.open_left = int(raw[2]) / 1000.0
        self.probes_free = int(raw[3])
        self.lease_wait = int(raw[4]) / 1000.0
        tr = raw[5]
        self.transition = tr.decode() if isinstance(tr, bytes) else str(tr)
        self.granted = bool(int(raw[6]))
        reason = raw[7]
        self.reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        self.old_state = int(raw[8])


class Coordinator:
    """What a shared breaker asks of its worker's hub (``hub.BreakerHub``): a base class, so
    the hub knows the breakers and the breakers only this."""

    def dirty(self, breaker: SharedBreaker) -> None:
        """The breaker has outcomes to send."""
        raise NotImplementedError

    async def probe(self, breaker: SharedBreaker, token: str) -> Reply | None:
        raise NotImplementedError

    def probe_done(self, breaker: SharedBreaker, token: str, result: str) -> None:
        raise NotImplementedError

    async def reset(self, breaker: SharedBreaker) -> Reply | None:
        raise NotImplementedError


class SharedProbe(Permit):
    """A half-open call: admitted locally, then a lease must be won in Redis."""

    __slots__ = ("epoch", "granted", "inner", "owner", "token")

    def __init__(self, owner: SharedBreaker, token: str) -> None:
        super().__init__(pending=True)
        self.owner = owner
        self.token = token
        self.epoch = -1
        self.granted = False
        self.inner: Permit | None = None  # the fallback's permit if Redis failed meanwhile

    async def ready(self) -> None:
        await self.owner._acquire(self)


class SharedBreaker(Breaker):
    __slots__ = (
        "_acquiring",
        "_clock",
        "_epoch",
        "_fallback",
        "_fast",
        "_held",
        "_hub",
        "_in_fallback",
        "_metrics",
        "_open_until",
        "_permit",
        "_probe_block_until",
        "_queued",
        "_reject",
        "_seq",
        "_slow",
        "_state",
        "_tally",
        "_token_prefix",
        "_tokens",
        "args",
        "key",
        "name",
        "policy",
    )

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        hub: Coordinator,
        *,
        key: str,
        channel: str,
        token_prefix: str,
        audit: AuditSink,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy
        self.key = key
        # ARGV[2..13] of breaker.lua, encoded once.
        self.args: tuple[str, ...] = (*(str(a) for a in policy.lua_args), channel, name)
        self._hub = hub
        self._clock = clock
        self._metrics = BreakerMetrics(name)
        self._fallback = LocalBreaker(name, policy, clock=clock, audit=audit, metrics=self._metrics)
        self._reject = Rejection(name)
        self._slow = policy.slow
        self._state = CLOSED
        self._epoch = -1  # unknown until the first reply; the first batch waits for it
        self._permit = EpochPermit(self._epoch)
        self._open_until = 0.0
        self._fast = True
        self._in_fallback = False
        self._seq = bytearray()
        self._tally: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._queued = False
        self._acquiring = 0
        self._held = 0
        self._probe_block_until = 0.0
        self._token_prefix = token_prefix
        self._tokens = itertools.count(1)

    # -- Breaker protocol (hot path) ------------------------------------------------------
    def admit(self) -> Permit:
        if self._fast:
            return self._permit
        return self._admit_slow()

    def record(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        if permit is self._permit:
            if outcome is Outcome.SUCCESS:
                if duration > self._slow:
                    self._seq.append(_F)
                    self._tally[Outcome.SLOW] += 1
                else:
                    self._seq.append(_S)
                    self._tally[Outcome.SUCCESS] += 1
            elif outcome is Outcome.IGNORED:
                self._tally[Outcome.IGNORED] += 1
                return
            else:
                self._seq.append(_F)
                self._tally[outcome] += 1
            if not self._queued:
                self._queued = True
                self._hub.dirty(self)
            return
        self._record_slow(permit, outcome, duration)

    def state_name(self) -> str:
        if self._in_fallback:
            return self._fallback.state_name()
        if self._state == OPEN and self._clock() >= self._open_until:
            return STATE_NAMES[HALF_OPEN]
        return STATE_NAMES[self._state]

    # -- slow paths -----------------------------------------------------------------------
    def _admit_slow(self) -> Permit:
        if self._in_fallback:
            self._metrics.fallback.inc()
            return self._fallback.admit()
        now = self._clock()
        if self._state == OPEN and now < self._open_until:
            self._metrics.rejections.inc()
            raise self._reject.error(self._open_until - now)
        # Half-open, or open long enough that Redis will move it to half-open.
        if now < self._probe_block_until or self._acquiring + self._held >= self.policy.probes:
            self._metrics.rejections.inc()
            raise self._reject.error(max(self._probe_block_until - now, 0.0))
        self._acquiring += 1
        return SharedProbe(self, f"{self._token_prefix}{next(self._tokens)}")

    async def _acquire(self, probe: SharedProbe) -> None:
        # Shielded: if the caller goes away mid-request, a lease Redis granted anyway is
        # handed back at once instead of expiring into a failed probe.
        request = asyncio.ensure_future(self._hub.probe(self, probe.token))
        try:
            reply = await asyncio.shield(request)
        except asyncio.CancelledError:
            request.add_done_callback(lambda done: self._give_back(done, probe.token))
            raise
        finally:
            self._acquiring -= 1
        if reply is None:  # Redis failed: the fallback decides this call
            self._metrics.fallback.inc()
            probe.inner = self._fallback.admit()
            return
        if reply.granted:
            probe.granted = True
            probe.epoch = reply.epoch
            if reply.epoch == self._epoch:
                self._held += 1
            return
        now = self._clock()
        if self._state == HALF_OPEN and reply.probes_free == 0:
            wait = reply.lease_wait if reply.lease_wait > 0 else PROBE_RECHECK
            self._probe_block_until = now + min(wait, PROBE_RECHECK)
        self._metrics.rejections.inc()
        wait = self._open_until - now if self._state == OPEN else max(self._probe_block_until - now, 0.0)
        raise self._reject.error(wait)

    def _give_back(self, done: asyncio.Future[Any], token: str) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        reply = done.result()
        if reply is not None and reply.granted:
            self._hub.probe_done(self, token, PROBE_CANCELLED)

    def _record_slow(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        if isinstance(permit, SharedProbe):
            if permit.owner is not self:
                return
            if permit.inner is not None:
                self._fallback.record(permit.inner, outcome, duration)
                return
            if not permit.granted:
                return
            permit.granted = False  # one outcome per probe
            if permit.epoch == self._epoch and self._held > 0:
                self._held -= 1
            self._metrics.outcomes[Outcome.SLOW if outcome is Outcome.SUCCESS and duration > self._slow
                                   else outcome].inc()
            self._hub.probe_done(self, permit.token, verdict(outcome, duration, self._slow))
            return
        # A permit of the fallback breaker, or one of an earlier epoch (stale: the fallback
        # does not recognise it either and only counts it).
        self._fallback.record(permit, outcome, duration)

    # -- batching -------------------------------------------------------------------------
    def take_batch(self) -> tuple[int, bytes, dict[Outcome, int]]:
        """(epoch, outcomes, tally) gathered since the last flush; resets them."""
        self._queued = False
        seq = bytes(self._seq)
        self._seq.clear()
        tally = self._tally
        self._tally = dict.fromkeys(Outcome, 0)
        for outcome, n in tally.items():
            if n:
                self._metrics.outcomes[outcome].inc(n)
        return self._epoch, seq, tally

    # -- state from Redis -----------------------------------------------------------------
    def apply(self, state: int, epoch: int, open_left: float, *, force: bool = False) -> None:
        """Adopt a state Redis reported (a script reply or a pub/sub message)."""
        if epoch < self._epoch and not force:
            return  # older news than what this worker already knows
        now = self._clock()
        if epoch != self._epoch:
            self._epoch = epoch
            self._permit = EpochPermit(epoch)
            # Outcomes gathered under the old epoch would be refused by the script anyway.
            self._seq.clear()
            self._held = 0
            self._probe_block_until = 0.0
        old = self._state
        self._state = state
        self._open_until = now + open_left if state == OPEN else 0.0
        self._fast = state == CLOSED and not self._in_fallback
        if old != state:
            self._metrics.transition(old, state)

    def enter_fallback(self, failed_batch: bytes = b"") -> None:
        """Redis failed: decide locally from now on, starting from the last known state."""
        if self._in_fallback:
            return
        log.warning("breaker %s: Redis unavailable, using the in-process breaker", self.name)
        now = self._clock()
        if self._state == OPEN:
            self._fallback.seed(OPEN, max(0.0, self._open_until - now))
        elif self._state == HALF_OPEN:
            self._fallback.seed(OPEN, 0.0)  # half-open again on the next call
        else:
            self._fallback.seed(CLOSED, 0.0)
        # Outcomes that could not be sent, or were still waiting to be, count locally.
        machine = self._fallback.machine
        for letter in failed_batch + self._seq:
            machine.record(letter == _F, now)
        self._seq.clear()
        self._in_fallback = True
        self._fast = False

    def leave_fallback(self, state: int, epoch: int, open_left: float) -> None:
        if not self._in_fallback:
            self.apply(state, epoch, open_left)
            return
        log.warning("breaker %s: Redis reachable again, using the shared breaker", self.name)
        self._in_fallback = False
        self.apply(state, epoch, open_left, force=True)
        self._metrics.transition(state, state)  # the gauge may still show the fallback's state

    @property
    def in_fallback(self) -> bool:
        return self._in_fallback

    @property
    def epoch(self) -> int:
        return self._epoch

    # -- inspection and control ---------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        if self._in_fallback:
            info = self._fallback.describe()
            info["backend"] = "local_fallback"
            return info
        now = self._clock()
        wait = max(0.0, self._open_until - now) if self._state == OPEN else None
        return {
            "service": self.name,
            "state": self.state_name(),
            "backend": "redis",
            "epoch": self._epoch,
            "retry_after": round(wait, 3) if wait is not None else None,
            "pending_outcomes": len(self._seq),
        }

    async def reset(self) -> None:
        """Close the breaker everywhere (decided in Redis, then published). If Redis cannot
        be reached, only this worker's fallback is reset and ``ConnectionError`` says so."""
        if await self._hub.reset(self) is None:
            await self._fallback.reset()
            raise ConnectionError(f"Redis unavailable: only this worker's breaker of '{self.name}' was reset")
