"""Forwarding one request to its service, streaming both ways.

Per attempt: the breaker admits (local state, no I/O), an instance is picked round-robin,
the request goes out with a streamed or buffered body, and the response streams back
chunk by chunk as it arrives (so server-sent events are never held back). A body whose
length is known and arrives in one chunk is sent in one ASGI message.

Retries happen only before the response has started, only for bodies the gateway still
holds (none, or buffered), and only as the service's retry policy allows.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, Final

from hotpath import errors
from hotpath.context import BodyTap, RequestContext
from hotpath.headers import RequestHeaderPolicy, UnsafeHeaderValue, response_headers
from hotpath.request_body import BodyTooLarge, ClientGone, finish_taps, read_whole, stream_body
from hotpath.resilience.contracts import CAUSE_CONNECT, CAUSE_TIMEOUT, Outcome, RetryPolicy
from hotpath.resilience.retry import parse_retry_after
from hotpath.responses import ResponseHead
from hotpath.router import Route
from hotpath.telemetry import Telemetry
from hotpath.upstream.client import (
    Body,
    UpstreamBodyError,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeout,
)

log: Final = logging.getLogger("gatehouse.proxy")
# Final: compiled code reads it from a static; a plain module global is a dict lookup per use.
perf_counter: Final = time.perf_counter

# Bodies up to this size (by Content-Length) are read whole: one upstream write, and the
# request can be retried. Larger or chunked bodies stream.
BUFFER_LIMIT: Final = 64 * 1024
RETRYABLE_STATUSES: Final = frozenset({502, 503, 504, 429})
# An exchange still running after about this long gets a task that watches for the client's
# disconnect (see DisconnectWatch); shorter ones only pay for a dict insert and removal.
DISCONNECT_WATCH_AFTER: Final = 0.05


class ResponseAborted(Exception):
    """The response had started when the upstream failed: the connection must be cut so
    the client cannot mistake a truncated body for a complete one."""


def _retry_after(head: UpstreamResponse) -> float | None:
    for k, v in head.headers:
        if k == b"retry-after":
            # delta-seconds or HTTP-date; None lets backoff decide
            return parse_retry_after(v.decode("latin-1"))
    return None


def _feed_whole(ctx: RequestContext, data: bytes) -> None:
    """A body read whole, shown to the taps; a tap may refuse it (``GatewayError``)."""
    taps = ctx.body_taps
    if taps is not None:
        for tap in taps:
            tap.feed(data)
        finish_taps(taps, True)


class Proxy:
    __slots__ = ("_headers", "_telemetry", "_watch")

    def __init__(self, header_policy: RequestHeaderPolicy, telemetry: Telemetry) -> None:
        self._headers = header_policy
        self._telemetry = telemetry
        self._watch = DisconnectWatch()

    async def _request_body(self, ctx: RequestContext, route: Route) -> Body:
        limit = route.max_body_bytes
        length = ctx.body_length
        if length > 0:
            if length > limit:
                raise errors.payload_too_large(limit)
            if length <= BUFFER_LIMIT:
                try:
                    data = await read_whole(ctx.receive, limit)
                except BodyTooLarge:
                    raise errors.payload_too_large(limit) from None
                ctx.bytes_in = len(data)
                _feed_whole(ctx, data)
                return data
        return stream_body(ctx, limit)

    async def forward(self, ctx: RequestContext, route: Route, send: Any) -> None:
        body: Body = None
        read = ctx.body
        if read is not None:
            # A plugin read the body whole (hotpath.request_body.read_body): forward it.
            _feed_whole(ctx, read)
            body = read if read else None
        elif ctx.body_length:
            body = await self._request_body(ctx, route)
        retry = route.service.retry
        retry.on_request()
        replayable = body is None or isinstance(body, bytes)
        if not replayable:
            # A streamed body is read by the upload itself, which sees a disconnect.
            await self._exchange(ctx, route, send, body, replayable, retry)
            return
        watch = self._watch
        watch.enter(ctx)
        try:
            await self._exchange(ctx, route, send, body, replayable, retry)
        finally:
            watch.leave(ctx)

    async def _exchange(
        self, ctx: RequestContext, route: Route, send: Any, body: Body, replayable: bool, retry: RetryPolicy
    ) -> None:
        service = route.service
        method = ctx.method
        may_retry = replayable and (method in retry.retryable_methods() or route.retry_non_idempotent)
        path = route.upstream_path(ctx.path)
        if ctx.query:
            path = f"{path}?{ctx.query.decode('latin-1')}"
        try:
            base_headers = self._headers.build(
                ctx.headers,
                peer=ctx.peer,
                scheme=ctx.scope.get("scheme", "http"),
                request_id=ctx.request_id_header,
                correlation_id=ctx.correlation_header,
                extra=ctx.upstream_headers,
            )
        except UnsafeHeaderValue:
            # Written verbatim upstream, a line break would start a header of its own.
            raise errors.bad_request("a header the gateway would send upstream contains a line break") from None
        deadline = ctx.started + route.timeout
        attempt = 0
        breaker = service.breaker
        telemetry = self._telemetry
        while True:
            remaining = deadline - perf_counter()
            if remaining <= 0:
                raise errors.upstream_timeout(service.name)
            try:
                permit = breaker.admit()
            except errors.GatewayError:
                ctx.report("breaker", "open")
                raise
            if permit.pending:
                await permit.ready()
            url = service.pick() + path
            ctx.upstream_url = url
            token, trace_headers = telemetry.upstream_started(ctx, attempt)
            headers = base_headers + trace_headers if trace_headers else base_headers
            t0 = perf_counter()
            delay: float | None = None
            try:
                # The first attempt gets the route's whole timeout; a retry what is left of it.
                budget = route.timeout if attempt == 0 else remaining
                async with service.client.stream(method, url, headers, body, budget) as resp:
                    status = resp.status
                    elapsed = perf_counter() - t0
                    ctx.upstream_ms = elapsed * 1000.0
                    if may_retry and status in RETRYABLE_STATUSES:
                        delay = retry.delay(attempt, status, _retry_after(resp), deadline - perf_counter())
                    if delay is not None:
                        breaker.record(permit, Outcome.FAILURE if status >= 500 else Outcome.SUCCESS, elapsed)
                        telemetry.upstream_finished(ctx, token, status, None)
                    else:
                        breaker.record(permit, Outcome.FAILURE if status >= 500 else Outcome.SUCCESS, elapsed)
                        try:
                            await self._relay(ctx, route, resp, send)
                        finally:
                            telemetry.upstream_finished(ctx, token, status, None)
                        return
            except UpstreamBodyError as body_error:
                breaker.record(permit, Outcome.IGNORED, perf_counter() - t0)
                telemetry.upstream_finished(ctx, token, None, "client_body")
                cause = body_error.cause
                if isinstance(cause, BodyTooLarge):
                    raise errors.payload_too_large(route.max_body_bytes) from None
                if isinstance(cause, errors.GatewayError):
                    raise cause from None  # a body tap refused the body mid-stream
                raise ClientGone() from None
            except UpstreamTimeout as timed_out:
                elapsed = perf_counter() - t0
                ctx.upstream_ms = elapsed * 1000.0
                telemetry.upstream_finished(ctx, token, None, f"timeout:{timed_out.phase}")
                if ctx.status:
                    # The outcome was recorded when the head arrived; one call, one outcome.
                    raise ResponseAborted("upstream timed out mid-response") from timed_out
                breaker.record(permit, Outcome.TIMEOUT, elapsed)
                delay = None
                if may_retry:
                    delay = retry.delay(attempt, CAUSE_TIMEOUT, None, deadline - perf_counter())
                if delay is None:
                    raise errors.upstream_timeout(service.name) from None
            except UpstreamConnectError as unreachable:
                elapsed = perf_counter() - t0
                telemetry.upstream_finished(ctx, token, None, "connect")
                if ctx.status:
                    raise ResponseAborted("upstream connection failed mid-response") from unreachable
                breaker.record(permit, Outcome.CONNECT_ERROR, elapsed)
                # A connection that never carried the request can be retried for any method.
                allowed = may_retry or (replayable and unreachable.before_send and retry.retryable_methods())
                delay = None
                if allowed:
                    delay = retry.delay(attempt, CAUSE_CONNECT, None, deadline - perf_counter())
                if delay is None:
                    raise errors.upstream_unreachable(service.name) from None
            except asyncio.CancelledError:
                if not ctx.status:  # once the response started, its outcome is recorded
                    breaker.record(permit, Outcome.IGNORED, perf_counter() - t0)
                raise
            attempt += 1
            if delay > 0:
                await asyncio.sleep(delay)

    async def _relay(self, ctx: RequestContext, route: Route, resp: UpstreamResponse, send: Any) -> None:
        out = response_headers(resp.headers, ctx.request_id_header, ctx.correlation_header)
        if ctx.response_headers:
            out.extend(ctx.response_headers)
        head = ResponseHead(resp.status, out)
        taps: list[BodyTap] | None = None
        for hook in route.chain.response:
            tap = await hook(ctx, head)
            if tap is not None:
                if taps is None:
                    taps = []
                taps.append(tap)
        declared = head.get(b"content-length")
        start = {"type": "http.response.start", "status": head.status, "headers": head.headers}
        complete = False
        try:
            if declared is None:
                # Unknown length (chunked, SSE): headers go out now, chunks as they come.
                await send(start)
                ctx.status = head.status
                first = await resp.read_chunk()
            else:
                first = await resp.read_chunk()
                if first is None or len(first) == int(declared):
                    ctx.status = head.status
                    await send(start)
                    body = first or b""
                    if taps:
                        for t in taps:
                            t.feed(body)
                    ctx.bytes_out = len(body)
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    complete = True
                    return
                ctx.status = head.status
                await send(start)
            sent = 0
            chunk = first
            while chunk is not None:
                if taps:
                    for t in taps:
                        t.feed(chunk)
                sent += len(chunk)
                ctx.bytes_out = sent
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await resp.read_chunk()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        except (OSError, RuntimeError) as exc:
            # What the server raises from send() once the client has gone (the upstream
            # client raises UpstreamError types only, never these).
            raise ClientGone() from exc
        finally:
            if taps:
                for t in taps:
                    t.finish(complete)


# Python 3.11's asyncio.current_task is a Python function (a frame, and a getpid inside
# get_running_loop, per call). Its C tasks record the running task in this dict, keyed
# by loop. Later versions have a C current_task and need not keep the dict.
_RUNNING: Final[dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None] = (
    getattr(asyncio.tasks, "_current_tasks", None) if sys.version_info < (3, 12) else None
)


class DisconnectWatch:
    """Cancels an exchange whose client has disconnected (one per worker).

    Without it, an upstream call (or an SSE stream) outlives its client until the route
    timeout: a cheap lever for anyone who opens and drops connections. Exchanges register
    on entry (a dict insert); one timer every ``DISCONNECT_WATCH_AFTER`` seconds starts a
    task that awaits ``http.disconnect`` only for those still running by then, so the
    common short request never pays for a task or a timer of its own.
    """

    __slots__ = ("_loop", "_pending", "_timer", "_watchers")

    def __init__(self) -> None:
        self._pending: dict[RequestContext, asyncio.Task[Any]] = {}
        self._watchers: dict[RequestContext, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self, ctx: RequestContext) -> None:
        running, loop = _RUNNING, self._loop
        task = running.get(loop) if running is not None and loop is not None else None
        if task is None:
            # The first request, or a loop other than the one remembered: ask asyncio.
            task = asyncio.current_task()
            if task is None:
                return
            self._loop = task.get_loop()
        self._pending[ctx] = task
        if self._timer is None:
            self._timer = task.get_loop().call_later(DISCONNECT_WATCH_AFTER, self._sweep)

    def leave(self, ctx: RequestContext) -> None:
        if self._pending.pop(ctx, None) is None:
            watcher = self._watchers.pop(ctx, None)
            if watcher is not None:
                watcher.cancel()

    def _sweep(self) -> None:
        self._timer = None
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        cutoff = perf_counter() - DISCONNECT_WATCH_AFTER
        for ctx, task in list(self._pending.items()):
            if ctx.started <= cutoff:
                del self._pending[ctx]
                self._watchers[ctx] = loop.create_task(self._watch(ctx, task))
        if self._pending:
            self._timer = loop.call_later(DISCONNECT_WATCH_AFTER, self._sweep)

    async def _watch(self, ctx: RequestContext, target: asyncio.Task[Any]) -> None:
        receive = ctx.receive
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                ctx.client_gone = True
                self._watchers.pop(ctx, None)
                target.cancel()
                return
            # A conforming server blocks here until the client leaves; one that answers at
            # once (an empty http.request, an in-process driver) must not get a loop that
            # never yields and freezes the worker.
            await asyncio.sleep(DISCONNECT_WATCH_AFTER)
