"""A per-worker batcher that coalesces script calls into one EVALSHA per tick and slot.

Why: a Redis round trip per request costs most of a worker's throughput. So ``submit``
only queues an item (the keys and arguments of one decision); the queue is flushed at the
end of the event-loop iteration, or after a short linger, as ONE script call that carries
every queued item (on a Redis Cluster, one call per slot, sent at once). While
``max_in_flight`` calls are outstanding, new items wait for the next call, so batches grow
with load and the number of Redis commands per request falls as throughput rises.

Time limits: an item never waits longer than ``timeout`` from the moment it was queued.
The deadline of a call is that of its oldest item, so a call that starts late gets less
time, never more. When a call fails (timeout, connection refused, cluster down) every
waiting item resolves as unavailable (``None``) and the batcher skips Redis for
``retry_interval``, so no request pays a timeout while Redis is known to be down.

Transport, one path: every call is written to the lean link of its slot
(``hotpath.redis.link``) and finished by callbacks, with one timer for its deadline; no
task per call. Three replies need more than that and get a task: NOSCRIPT (Redis restarted
or ``SCRIPT FLUSH``: the script is loaded over the same link and the call repeated once,
within the same deadline; the failed call ran nothing), and on a Cluster a redirect
(``MOVED``/``ASK``) or a primary that cannot be reached, where coredis, which owns the
topology, carries the call and learns the new map.

Subclasses say what a script call carries and what its reply means: ``encode_args`` and
``argv`` (the same arguments, as bytes for the link and as values for coredis) and
``resolve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from time import perf_counter
from typing import Any, Final

from coredis.exceptions import NoScriptError

from hotpath.bounded import remember
from hotpath.deferred import deferred_histogram
from hotpath.metrics import REDIS_BATCH_SIZE, REDIS_ERRORS, REDIS_LATENCY
from hotpath.redis.link import Links, RespLink
from hotpath.redis.resp import REDIRECT_REPLIES, LinkDown, ReplyError, bulk, bulk_number, hash_slot, is_outage
from hotpath.redis.scripts import LuaScript

log: Final = logging.getLogger("gatehouse.redis")
# The two lines that say a batcher's callers are decided without Redis (the load harness
# looks for them).
OUTAGE_LOG: Final = "Redis unavailable for %s"
FAILED_LOG: Final = "script call for %s failed"

# Recent keys in wire form: a few keys per recent caller (not Final: tests shrink it).
WIRE_KEYS_KEPT = 16384


class Pending:
    """One queued item: its keys, its script arguments and the future of its result."""

    __slots__ = ("args", "future", "keys", "queued")

    def __init__(self, future: asyncio.Future[Any], keys: Sequence[str], args: tuple[int, ...],
                 queued: float) -> None:
        self.future = future
        self.keys = keys
        self.args = args
        self.queued = queued


class _Round:
    """One flushed batch, split into one call per slot: in flight until each is answered."""

    __slots__ = ("decided", "left", "started")

    def __init__(self, left: int, started: float) -> None:
        self.left = left
        self.decided = 0
        self.started = started


class _Call:
    """One script call on one link, finished by callbacks instead of a task."""

    __slots__ = ("batch", "deadline", "link", "owner", "payload", "round", "timer", "waiter")

    def __init__(self, owner: ScriptBatcher, rnd: _Round, batch: list[Pending], link: RespLink | None,
                 deadline: float) -> None:
        self.owner = owner
        self.round = rnd
        self.batch = batch
        self.link = link
        self.deadline = deadline
        self.payload = b""
        self.waiter: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """The oldest item's deadline passed without a reply."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            # A silent connection may be a dead one: the next call connects afresh.
            waiter.set_exception(TimeoutError("no reply from Redis before the timeout"))
            if self.link is not None:
                self.link.abandon(waiter)

    def done(self, waiter: asyncio.Future[Any]) -> None:
        owner = self.owner
        if self.timer is not None:
            self.timer.cancel()
        owner._calls.discard(self)
        handed_over = False
        try:
            if waiter.cancelled():  # the batcher was closed
                owner._fail(self.batch)
                return
            exc = waiter.exception()
            if exc is None:
                owner._answered(self, waiter.result())
            elif owner._closed:
                owner._fail(self.batch)
            elif isinstance(exc, ReplyError) and exc.code == "NOSCRIPT":
                owner._spawn(owner._reload_and_repeat(self))
                handed_over = True
            elif owner.links.cluster and (
                isinstance(exc, LinkDown) or (isinstance(exc, ReplyError) and exc.code in REDIRECT_REPLIES)
            ):
                # The slot is served elsewhere now (resharding, failover), or its primary is
                # gone: the node ran nothing, and coredis learns topology only by trying.
                owner._spawn(owner._through_coredis(self))
                handed_over = True
            else:
                owner._failure(exc, self.batch)
        except Exception as exc:  # a reply that does not fit the batch: fail it
            owner._failure(exc, self.batch)
        finally:
            if not handed_over:
                owner._part_done(self.round)


class ScriptBatcher:
    def __init__(
        self,
        links: Links,
        script: LuaScript,
        *,
        operation: str,
        purpose: str,
        timeout: float,
        client: Any = None,
        max_batch: int = 256,
        max_in_flight: int = 1,
        retry_interval: float = 0.5,
        linger: float = 0.0,
        min_batch: int | None = None,
    ) -> None:
        self.links = links
        # coredis: only for redirects and unreachable primaries on a Cluster.
        self.client = client
        self.script = script
        self.timeout = timeout
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.retry_interval = retry_interval
        self.linger = linger
        # A lingering batcher sends once this many items wait; an eager one (no linger)
        # sends at the end of the tick, with everything queued in it.
        send_at = max_batch if min_batch is None or linger <= 0 else min(min_batch, max_batch)
        self.send_at = max(1, send_at)
        self._pending: list[Pending] = []
        # Wire form of recent keys: repeat callers' keys are the same str objects (the
        # callers' own caches), so this is a probe on a cached hash (a hotpath.bounded table).
        self._wire_keys: dict[str, bytes] = {}
        self._in_flight = 0
        # The pending send: a linger timer, or a flush at the end of this tick (_soon).
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._soon = False
        self._down_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: set[_Call] = set()
        self._closed = False
        # Observed once per call, published with the request metrics (hotpath.deferred).
        self._latency = deferred_histogram(REDIS_LATENCY.labels(operation))
        self._batch_size = deferred_histogram(REDIS_BATCH_SIZE.labels(operation))
        self._errors = REDIS_ERRORS.labels(operation)
        self.operation = operation
        # What the calls are for, in log lines: "Redis unavailable for <purpose>".
        self.purpose = purpose
        # Observable counters (tests, admin): calls answered, items carried, script loads,
        # calls written to lean links, and calls carried by coredis after a redirect.
        self.calls = 0
        self.decisions = 0
        self.script_loads = 0
        self.link_calls = 0
        self.redirected = 0

    # -- what a call carries: subclasses -----------------------------------------------

    def encode_args(self, batch: list[Pending]) -> tuple[int, list[bytes]]:
        """The call's ARGV after the keys: (item count, each item as a RESP bulk string)."""
        raise NotImplementedError

    def argv(self, batch: list[Pending]) -> list[int]:
        """The same arguments as values, for a call carried by coredis."""
        raise NotImplementedError

    def resolve(self, batch: list[Pending], reply: Any) -> None:
        """Set each item's future from the call's reply (a reply of another shape raises)."""
        raise NotImplementedError

    # -- queueing ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        loop = self._loop
        return loop is None or loop.time() >= self._down_until

    def submit(self, keys: Sequence[str], args: tuple[int, ...]) -> asyncio.Future[Any] | None:
        """Queue one item; None means Redis is known to be down right now."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._down_until or self._closed:
            return None
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Pending(fut, keys, args, now))
        self._wake(loop)
        return fut

    async def start(self) -> None:
        """Load the script ahead of the first request; failures are left to NOSCRIPT recovery."""
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await asyncio.gather(*(link.call(self.script.load) for link in self.links.all()))
        except Exception as exc:  # Redis may be down at startup: the gateway serves on
            log.warning("script for %s not preloaded: %s", self.purpose, f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        self._closed = True
        self._disarm()  # a closed batcher sends nothing more
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for call in list(self._calls):
            if call.waiter is not None:
                call.waiter.cancel()  # its callback fails the batch
        self._fail(self._pending)
        self._pending = []

    # -- flushing ----------------------------------------------------------------------

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Decide when the waiting items go: now, at the end of this tick, or on a timer."""
        pending = self._pending
        if not pending or self._in_flight >= self.max_in_flight or self._closed:
            return  # a call in flight wakes the batcher again when it returns
        if len(pending) >= self.max_batch:
            self._flush()
        elif self._soon:
            return  # already going out at the end of this tick, with whatever joins it
        elif len(pending) >= self.send_at:
            # Enough company: waiting out the linger would only add latency, and hold a
            # loaded worker's requests in lockstep. The rest of this tick still joins.
            self._arm(loop, 0.0)
        elif self._timer is None:
            # The linger counts from the oldest waiting item, which may have queued while
            # the previous call was in flight.
            self._arm(loop, pending[0].queued + self.linger - loop.time())

    def _arm(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._disarm()
        if delay > 0:
            self._timer = loop.call_later(delay, self._flush)
        else:
            self._soon = True
            self._timer = loop.call_soon(self._flush)

    def _disarm(self) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        self._disarm()
        loop = self._loop
        if loop is None or self._closed:
            return
        while self._pending and self._in_flight < self.max_in_flight:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._in_flight += 1
            self._dispatch(loop, batch)

    def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[Pending]) -> None:
        deadline = batch[0].queued + self.timeout
        rnd = _Round(1, perf_counter())
        if deadline <= loop.time():
            # The previous call used up this batch's wait: Redis is too slow to be useful.
            self._outage(TimeoutError("queued items waited past the timeout"), batch)
            self._part_done(rnd)
            return
        if not self.links.cluster:
            self._send(loop, rnd, batch, 0, deadline)
            return
        # Every key of one script call must live in one slot: one call per slot.
        groups: dict[int, list[Pending]] = {}
        for p in batch:
            groups.setdefault(hash_slot(p.keys[0]), []).append(p)
        rnd.left = len(groups)
        for slot, part in groups.items():
            self._send(loop, rnd, part, slot, deadline)

    def _send(self, loop: asyncio.AbstractEventLoop, rnd: _Round, part: list[Pending], slot: int,
              deadline: float) -> None:
        link = self.links.for_slot(slot)
        call = _Call(self, rnd, part, link, deadline)
        call.payload = self._wire(part)
        if link is None:  # no slot map (yet): coredis knows the topology
            self._spawn(self._through_coredis(call))
            return
        self.link_calls += 1
        waiter = call.waiter = link.send(call.payload, loop)
        call.timer = loop.call_at(deadline, call.expire)
        self._calls.add(call)
        waiter.add_done_callback(call.done)

    def _wire(self, batch: list[Pending]) -> bytes:
        """``EVALSHA sha numkeys key... arg...`` as one RESP command."""
        wire_keys = self._wire_keys
        parts: list[bytes] = [b"", self.script.evalsha_head, b""]
        n_keys = 0
        for p in batch:
            for key in p.keys:
                encoded = wire_keys.get(key)
                if encoded is None:
                    encoded = remember(wire_keys, key, bulk(key.encode()), WIRE_KEYS_KEPT)
                parts.append(encoded)
                n_keys += 1
        n_args, args = self.encode_args(batch)
        parts.extend(args)
        parts[0] = b"*%d\r\n" % (3 + n_keys + n_args)
        parts[2] = bulk_number(n_keys)
        return b"".join(parts)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the slow paths: NOSCRIPT and redirects ----------------------------------------

    async def _reload_and_repeat(self, call: _Call) -> None:
        link = call.link
        assert link is not None
        try:
            async with asyncio.timeout(self._remaining(call)):
                self.script_loads += 1
                log.info("script for %s missing in Redis (restart or SCRIPT FLUSH); loading it again", self.purpose)
                await link.call(self.script.load)
                reply = await link.call(call.payload)
            self._answered(call, reply)
        except asyncio.CancelledError:
            self._fail(call.batch)
            raise
        except Exception as exc:
            self._failure(exc, call.batch)
        finally:
            self._part_done(call.round)

    async def _through_coredis(self, call: _Call) -> None:
        client = self.client
        try:
            if client is None:
                raise LinkDown("no Redis client to follow the redirect")
            self.redirected += 1
            keys = [k for p in call.batch for k in p.keys]
            argv = self.argv(call.batch)
            async with asyncio.timeout(self._remaining(call)):
                try:
                    reply = await client.evalsha(self.script.sha, keys, argv)
                except NoScriptError:
                    self.script_loads += 1
                    await client.script_load(self.script.source)
                    reply = await client.evalsha(self.script.sha, keys, argv)
            self._answered(call, reply)
        except asyncio.CancelledError:
            self._fail(call.batch)
            raise
        except Exception as exc:
            self._failure(exc, call.batch)
        finally:
            self._part_done(call.round)

    def _remaining(self, call: _Call) -> float:
        loop = self._loop
        assert loop is not None
        return max(0.0, call.deadline - loop.time())

    # -- results -----------------------------------------------------------------------

    def _answered(self, call: _Call, reply: Any) -> None:
        self.resolve(call.batch, reply)
        call.round.decided += len(call.batch)

    def _part_done(self, rnd: _Round) -> None:
        rnd.left -= 1
        if rnd.left > 0:
            return
        if rnd.decided:
            self.calls += 1
            self.decisions += rnd.decided
            self._latency.observe(perf_counter() - rnd.started)
            self._batch_size.observe(rnd.decided)
        self._in_flight -= 1
        if self._loop is not None:
            self._wake(self._loop)

    @staticmethod
    def _fail(batch: list[Pending]) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)

    def _failure(self, exc: BaseException, batch: list[Pending]) -> None:
        if is_outage(exc):
            self._outage(exc, batch)
            return
        self._errors.inc()
        log.error(FAILED_LOG + ": %s", self.purpose, f"{type(exc).__name__}: {exc}")
        self._fail(batch)

    def _outage(self, exc: BaseException, batch: list[Pending]) -> None:
        loop = self._loop
        assert loop is not None
        self._errors.inc()
        if loop.time() >= self._down_until:
            # Formatted here: a log record holding the exception would keep its traceback
            # (and the dead connection's buffers) alive.
            log.warning(OUTAGE_LOG + " (%s); fallback for %.2fs", self.purpose,
                        f"{type(exc).__name__}: {exc}", self.retry_interval)
        self._down_until = loop.time() + self.retry_interval
        # Everything queued would go to the same unavailable Redis: answer it now.
        waiting, self._pending = self._pending, []
        self._fail(batch)
        self._fail(waiting)
