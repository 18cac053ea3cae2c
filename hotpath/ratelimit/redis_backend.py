"""The Redis backend: a per-worker batcher that coalesces decisions into one script call.

Why: a Redis round trip per request costs about two thirds of a worker's throughput
(coredis spends ~300-500 us of CPU per command). So ``submit`` only queues the decision;
the queue is flushed at the next event-loop iteration, which carries every decision made
by requests in the same tick, as ONE ``EVALSHA decide.lua`` (or, on a Redis Cluster, one
per slot, sent concurrently). While ``max_in_flight`` calls are outstanding, new decisions
wait for the next call, so batches grow with load and the number of Redis commands per
request falls as throughput rises.

Time limits: a decision never waits longer than ``timeout`` from the moment it was queued.
The deadline of a call is that of its oldest decision, so a call that starts late gets
less time, never more. When a call fails (timeout, connection refused, cluster down) the
backend resolves every waiting decision as unavailable and skips Redis for
``retry_interval``, so no request pays a timeout while Redis is known to be down.

A call on a standalone Redis whose lean link is connected is written from ``_flush``
itself and finished by callbacks (``_LinkCall``: one timer for its deadline); a call that
must connect first, a Cluster call and a coredis call run in a task under
``asyncio.timeout``.

Transport: calls go over ``RespLink``s (``hotpath/state/resp.py``), lean pipelined
connections that write the command as bytes assembled from pieces encoded once (each
distinct argument tuple is encoded the first time it is seen): coredis's own per-command
cost was most of the limiter's CPU. A call carries each distinct argument tuple (a
"plan": a route's cost and a tier's limits) once, and each decision only its plan's
number, so Redis parses a plan once per call rather than once per decision. On a
Cluster each slot's call goes to its primary's link (``hotpath/state/cluster_links.py``);
a redirect sends that call through coredis.

Unavailable decisions resolve to ``None``; the caller applies its policy's failure mode.
NOSCRIPT (Redis restarted, ``SCRIPT FLUSH``) is answered by loading the script and
repeating the call once, within the same deadline; the failed call executed nothing.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from time import perf_counter
from typing import Any, Final

from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import NoScriptError, RedisClusterError

from hotpath.bounded import remember
from hotpath.ratelimit.limits import Decision
from hotpath.ratelimit.scripts import DECIDE, LuaScript
from hotpath.state.cluster_links import ClusterLinks
from hotpath.state.resp import LinkDown, ReplyError, RespLink, bulk
from observability.deferred_counters import deferred_histogram
from observability.metrics import REDIS_BATCH_SIZE, REDIS_ERRORS, REDIS_LATENCY

log: Final = logging.getLogger("gatehouse.ratelimit")

OPERATION: Final = "rate_limit"
REPLY_WIDTH: Final = 6  # allowed, index, limit, remaining, reset_ms, retry_ms
WIRE_KEYS_KEPT = 16384  # a few keys per recent caller (hotpath/ratelimit/policy.py)


def hash_slot(key: str) -> int:
    """Redis Cluster slot of a key (CRC16/XMODEM of its hash tag)."""
    raw = key.encode("utf-8")
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % 16384


class _LinkCall:
    """One batch sent straight over a live lean link, finished by callbacks instead of a task.

    Why: a task per call, ``asyncio.timeout`` (Python frames, and a ``getpid`` each time
    it looks up the loop or the task) and the link's coroutine cost about 3,500 instructions
    per decision at 16 decisions per call (callgrind, in process), more in smaller batches.
    Sending from ``_flush`` also writes the command in this loop iteration rather than in the
    next one, where the task would have started."""

    __slots__ = ("batch", "link", "owner", "started", "timer", "waiter")

    def __init__(self, owner: RedisBatcher, link: RespLink, batch: list[_Pending], waiter: asyncio.Future[Any],
                 started: float) -> None:
        self.owner = owner
        self.link = link
        self.batch = batch
        self.waiter = waiter
        self.started = started
        self.timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """The oldest decision's deadline passed without a reply."""
        waiter = self.waiter
        if not waiter.done():
            # A silent connection may be a dead one: the next call connects afresh.
            waiter.set_exception(TimeoutError("no reply from Redis before the rate limit timeout"))
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
                owner._resolve(self.batch, waiter.result())
                owner._completed(self.batch, self.started)
            elif isinstance(exc, ReplyError) and exc.code == "NOSCRIPT" and not owner._closed:
                # Nothing ran: load the script and repeat the call, within the same deadline.
                owner._spawn(owner._run(self.batch, reload=True))
                handed_over = True
            else:
                owner._failure(exc, self.batch)
        except Exception as exc:  # a reply that does not fit the batch: fail it, as a task would
            owner._failure(exc, self.batch)
        finally:
            if not handed_over:
                owner._call_done()


class _Pending:
    __slots__ = ("args", "future", "keys", "queued")

    def __init__(self, future: asyncio.Future[Decision | None], keys: Sequence[str], args: tuple[int, ...],
                 queued: float) -> None:
        self.future = future
        self.keys = keys
        self.args = args
        self.queued = queued


# Error replies of a Redis that is up but cannot serve yet (loading its data, a script
# running too long, the cluster or its primary down): outages, not bad commands.
OUTAGE_REPLIES: Final = frozenset({"LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN"})


def _is_outage(exc: BaseException) -> bool:
    """Errors that say Redis is unreachable or too slow, as opposed to a bad command."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_outage(e) for e in exc.exceptions)
    if isinstance(exc, ReplyError):
        return exc.code in OUTAGE_REPLIES
    # The lean link's LinkDown is a ConnectionError, hence an OSError.
    return isinstance(exc, (TimeoutError, OSError, RedisConnectionError, RedisClusterError))


class RedisBatcher:
    def __init__(
        self,
        client: Any,
        *,
        cluster: bool,
        timeout: float,
        max_batch: int = 256,
        max_in_flight: int = 1,
        retry_interval: float = 0.5,
        linger: float = 0.0,
        min_batch: int | None = None,
        script: LuaScript = DECIDE,
        link: RespLink | None = None,
        cluster_links: ClusterLinks | None = None,
    ) -> None:
        self.client = client
        self.link = link
        self.cluster_links = cluster_links
        self.cluster = cluster
        self.timeout = timeout
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.retry_interval = retry_interval
        self.linger = linger
        # A lingering batcher sends once this many decisions wait; an eager one (no linger)
        # sends on the next loop tick, with everything queued in this one.
        send_at = max_batch if min_batch is None or linger <= 0 else min(min_batch, max_batch)
        self.send_at = max(1, send_at)
        self.script = script
        self._pending: list[_Pending] = []
        # Wire form of each distinct argument tuple (a route's cost and tier plan): a
        # handful per configuration, encoded on first use.
        self._wire_args: dict[tuple[int, ...], bytes] = {}
        # Wire form of recent keys: repeat callers' keys are the same str objects (the
        # policy's cache), so this is a probe on a cached hash (a hotpath.bounded table).
        self._wire_keys: dict[str, bytes] = {}
        self._wire_head = bulk(b"EVALSHA") + bulk(script.sha.encode())
        self._in_flight = 0
        # The pending send: a linger timer, or a flush at the end of this tick (_soon).
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._soon = False
        self._down_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: set[_LinkCall] = set()  # batches out on the lean link without a task
        self._closed = False
        # Observed once per call, published with the request metrics (deferred_counters).
        self._latency = deferred_histogram(REDIS_LATENCY.labels(OPERATION))
        self._batch_size = deferred_histogram(REDIS_BATCH_SIZE.labels(OPERATION))
        self._errors = REDIS_ERRORS.labels(OPERATION)
        # Observable counters (tests, admin): calls sent, decisions carried, script loads.
        self.calls = 0
        self.decisions = 0
        self.script_loads = 0
        self.link_calls = 0  # script calls that went over a lean link rather than coredis

    @property
    def available(self) -> bool:
        loop = self._loop
        return loop is None or loop.time() >= self._down_until

    def submit(self, keys: Sequence[str], args: tuple[int, ...]) -> asyncio.Future[Decision | None] | None:
        """Queue one decision; None means Redis is known to be down right now."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._down_until or self._closed:
            return None
        fut: asyncio.Future[Decision | None] = loop.create_future()
        pending = self._pending
        pending.append(_Pending(fut, keys, args, now))
        self._wake(loop)
        return fut

    async def start(self) -> None:
        """Load the script ahead of the first request; failures are left to NOSCRIPT recovery."""
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await self.client.script_load(self.script.source)
        except Exception as exc:  # Redis may be down at startup: the gateway serves on
            log.warning("rate limit script not preloaded: %s", f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        self._closed = True
        self._disarm()  # a closed batcher sends nothing more
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for call in list(self._calls):
            call.waiter.cancel()  # its callback fails the batch
        self._fail(self._pending)
        self._pending = []

    # -- flushing --------------------------------------------------------------------------

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Decide when the waiting decisions go: now, at the end of this tick, or on a timer."""
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
            # The linger counts from the oldest waiting decision, which may have queued
            # while the previous call was in flight.
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
            if not self._send(loop, batch):
                self._spawn(self._run(batch))

    def _send(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> bool:
        """Send ``batch`` at once over a live lean link (standalone Redis); False when it
        needs a task instead: a Cluster, coredis, or a link that must connect first."""
        link = self.link
        if link is None or self.cluster:
            return False
        deadline = batch[0].queued + self.timeout
        if deadline <= loop.time():
            return False  # the task path reports it, as for any call
        started = perf_counter()
        waiter = link.send(self._wire(batch), loop)
        if waiter is None:
            return False
        self.link_calls += 1
        call = _LinkCall(self, link, batch, waiter, started)
        call.timer = loop.call_at(deadline, call.expire)
        self._calls.add(call)
        waiter.add_done_callback(call.done)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_done(self) -> None:
        self._in_flight -= 1
        if self._loop is not None:
            self._wake(self._loop)

    async def _run(self, batch: list[_Pending], reload: bool = False) -> None:
        try:
            await self._execute(batch, reload)
        finally:
            self._call_done()

    async def _execute(self, batch: list[_Pending], reload: bool) -> None:
        """``reload``: the script is missing (NOSCRIPT on a call sent without a task)."""
        loop = self._loop
        assert loop is not None
        budget = batch[0].queued + self.timeout - loop.time()
        if budget <= 0:
            # The previous call used up this batch's wait: Redis is too slow to be useful.
            self._outage(TimeoutError("rate limit decisions waited past the timeout"), batch)
            return
        started = perf_counter()
        try:
            async with asyncio.timeout(budget):
                if reload:
                    await self._reload_script()
                if self.cluster:
                    failed = await self._execute_cluster(batch)
                else:
                    if self.link is not None:
                        reply = await self._call_link(self.link, batch)
                    else:
                        reply = await self._call([k for p in batch for k in p.keys], _argv(batch))
                    self._resolve(batch, reply)
                    failed = None
        except asyncio.CancelledError:
            self._fail(batch)
            raise
        except Exception as exc:
            self._failure(exc, batch)
            return
        if failed is not None:
            self._failure(failed[0], failed[1])
        self._completed(batch, started)

    def _completed(self, batch: list[_Pending], started: float) -> None:
        self.calls += 1
        self.decisions += len(batch)
        self._latency.observe(perf_counter() - started)
        self._batch_size.observe(len(batch))

    async def _execute_cluster(self, batch: list[_Pending]) -> tuple[BaseException, list[_Pending]] | None:
        # Every key of one script call must live in one slot: one call per slot, all
        # sent at once (coredis routes each to its node).
        groups: dict[int, list[_Pending]] = {}
        for p in batch:
            groups.setdefault(hash_slot(p.keys[0]), []).append(p)
        parts = list(groups.values())
        replies = await asyncio.gather(
            *(self._call_slot(slot, part) for slot, part in groups.items()),
            return_exceptions=True,
        )
        failed: list[_Pending] = []
        error: BaseException | None = None
        for part, reply in zip(parts, replies, strict=True):
            if isinstance(reply, BaseException):
                error = error or reply
                failed.extend(part)
            else:
                self._resolve(part, reply)
        return (error, failed) if error is not None else None

    async def _call_slot(self, slot: int, part: list[_Pending]) -> Any:
        links = self.cluster_links
        link = links.for_slot(slot) if links is not None else None
        if link is not None:
            try:
                return await self._call_link(link, part)
            except LinkDown:
                # The mapped primary is unreachable (failed over, gone). coredis learns the
                # new topology only from its own failures, so this call goes through it.
                pass
            except ReplyError as exc:
                if exc.code not in ("MOVED", "ASK"):
                    raise
                # The slot is served elsewhere now (resharding, failover) and the node ran
                # nothing: coredis follows the redirect and refreshes the map links use.
        return await self._call([k for p in part for k in p.keys], _argv(part))

    async def _call_link(self, link: RespLink, batch: list[_Pending]) -> Any:
        self.link_calls += 1
        payload = self._wire(batch)
        try:
            return await link.call(payload)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
            await self._reload_script()
            return await link.call(payload)

    def _wire(self, batch: list[_Pending]) -> bytes:
        """``EVALSHA sha numkeys key... nplans plan... pick...`` as one RESP command."""
        wire_args = self._wire_args
        wire_keys = self._wire_keys
        keys: list[bytes] = []
        for p in batch:
            for key in p.keys:
                encoded_key = wire_keys.get(key)
                if encoded_key is None:
                    encoded_key = remember(wire_keys, key, bulk(key.encode()), WIRE_KEYS_KEPT)
                keys.append(encoded_key)
        plans, picks = _plans(batch)
        encoded_plans: list[bytes] = []
        n_args = 1 + len(picks)
        for args in plans:
            encoded = wire_args.get(args)
            if encoded is None:
                encoded = wire_args[args] = b"".join(bulk(b"%d" % a) for a in args)
            encoded_plans.append(encoded)
            n_args += len(args)
        n_keys = len(keys)
        return b"".join((
            b"*%d\r\n" % (3 + n_keys + n_args), self._wire_head, bulk(b"%d" % n_keys), *keys,
            _bulk_number(len(plans)), *encoded_plans, *[_bulk_number(i) for i in picks],
        ))

    async def _call(self, keys: list[str], argv: list[int]) -> Any:
        try:
            return await self.client.evalsha(self.script.sha, keys, argv)
        except NoScriptError:
            await self._reload_script()
            return await self.client.evalsha(self.script.sha, keys, argv)

    async def _reload_script(self) -> None:
        """After NOSCRIPT (the failed call ran nothing); the caller repeats its call once."""
        self.script_loads += 1
        log.info("rate limit script missing in Redis (restart or SCRIPT FLUSH); loading it again")
        await self.client.script_load(self.script.source)

    # -- results ---------------------------------------------------------------------------

    @staticmethod
    def _resolve(batch: list[_Pending], reply: Any) -> None:
        # The script's numbers arrive as RESP integers. Read as list[int], compiled code
        # indexes, checks and unboxes them directly (a reply of another shape raises
        # TypeError and fails the batch); on an Any reply each was a generic call.
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

    @staticmethod
    def _fail(batch: list[_Pending]) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)

    def _failure(self, exc: BaseException, batch: list[_Pending]) -> None:
        if _is_outage(exc):
            self._outage(exc, batch)
            return
        self._errors.inc()
        log.error("rate limit script call failed: %s", f"{type(exc).__name__}: {exc}")
        self._fail(batch)

    def _outage(self, exc: BaseException, batch: list[_Pending]) -> None:
        loop = self._loop
        assert loop is not None
        self._errors.inc()
        if loop.time() >= self._down_until:
            # Formatted here: a log record holding the exception would keep its traceback
            # (and the dead connection's buffers) alive.
            log.warning("Redis unavailable for rate limiting (%s); fallback for %.2fs",
                        f"{type(exc).__name__}: {exc}", self.retry_interval)
        self._down_until = loop.time() + self.retry_interval
        # Everything queued would go to the same unavailable Redis: answer it now.
        waiting, self._pending = self._pending, []
        self._fail(batch)
        self._fail(waiting)


def _plans(batch: list[_Pending]) -> tuple[list[tuple[int, ...]], list[int]]:
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


def _argv(batch: list[_Pending]) -> list[int]:
    plans, picks = _plans(batch)
    argv: list[int] = [len(plans)]
    for args in plans:
        argv.extend(args)
    argv.extend(picks)
    return argv


# Plan numbers and counts as RESP bulk strings, encoded once (a batch holds at most
# max_batch decisions, 256 by default).
_BULK_NUMBERS: Final = tuple(bulk(b"%d" % i) for i in range(257))


def _bulk_number(i: int) -> bytes:
    return _BULK_NUMBERS[i] if i < len(_BULK_NUMBERS) else bulk(b"%d" % i)
