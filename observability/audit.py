"""Audit event delivery: a bounded queue, batched asynchronous POSTs, an optional JSON log.

``emit`` is what request handlers call: it appends to a bounded in-memory queue and
returns; it never awaits, blocks or raises. A background task per worker takes batches
from the queue and POSTs them to the HTTP sink as ``{"events": [...]}`` with a bearer
token, retrying connection errors, timeouts, 408/425/429 and 5xx with exponential
backoff and jitter. While the sink is slow or down the queue absorbs events; once it is
full, new events are dropped. Every event ends in ``gatehouse_audit_events{type, result}``
as ``sent``, ``dropped`` (queue full, or still queued when shutdown's bound ran out) or
``failed`` (retries exhausted, or refused by the sink with another 4xx).

On shutdown the queue is flushed for at most ``audit.shutdown_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from hotpath.audit import AuditEvent, AuditSink, AuditType, set_user_hash_key
from observability.audit_config import URL_RE, AuditConfig
from observability.metrics import AUDIT_EVENTS

log = logging.getLogger("gatehouse.audit")

SINK_URL_ENV = "AUDIT_EVENT_SINK_URL"
SINK_TOKEN_ENV = "AUDIT_EVENT_SINK_TOKEN"
RETRY_STATUSES = frozenset({408, 425, 429})
_PIPE_BUF = 4096


class _Batch(msgspec.Struct):
    events: list[AuditEvent]


class _LogLine(msgspec.Struct, tag_field="log", tag="audit"):
    """An event as a JSON log line; the tag field marks it among other log lines."""

    event: AuditEvent


_encode = msgspec.json.Encoder().encode


class AuditDelivery(AuditSink):
    """The real ``AuditSink``: see the module docstring."""

    def __init__(self, config: AuditConfig, sink_url: str | None, sink_token: str | None) -> None:
        self.config = config
        self.sink_url = sink_url
        self._token = sink_token
        self._queue: deque[AuditEvent] = deque()
        self._max = config.queue_size
        self._batch_size = config.batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._closing = False
        self._stopped = False
        self._deadline = float("inf")
        self._log_fd = (1 if config.log_output == "stdout" else 2) if config.log else None
        self._sent = {t: AUDIT_EVENTS.labels(t.value, "sent") for t in AuditType}
        self._dropped = {t: AUDIT_EVENTS.labels(t.value, "dropped") for t in AuditType}
        self._failed = {t: AUDIT_EVENTS.labels(t.value, "failed") for t in AuditType}

    # -- request path -----------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        try:
            queue = self._queue
            if self._stopped or len(queue) >= self._max:
                self._dropped[event.type].inc()
                return
            queue.append(event)
            if len(queue) == self._batch_size:
                self._wake.set()
        except Exception:  # an audit hiccup must never fail a request
            log.exception("audit emit failed")

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.sink_url is not None:
            headers = {"content-type": "application/json", "user-agent": "gatehouse-audit"}
            if self._token:
                headers["authorization"] = f"Bearer {self._token}"
            self._client = httpx.AsyncClient(
                timeout=self.config.timeout,
                headers=headers,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
            )
        self._task = asyncio.create_task(self._run(), name="audit-delivery")

    async def stop(self) -> None:
        """Flush what is queued within ``shutdown_timeout``, then close."""
        self._deadline = time.monotonic() + self.config.shutdown_timeout
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.shutdown_timeout + 0.5)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._stopped = True
        for event in self._queue:
            self._dropped[event.type].inc()
        self._queue.clear()
        if self._client is not None:
            await self._client.aclose()

    # -- delivery -----------------------------------------------------------------------

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not self._closing and len(queue) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.flush_interval):
                        await self._wake.wait()
            self._wake.clear()
            while queue:
                if self._closing and time.monotonic() >= self._deadline:
                    return
                n = min(len(queue), self._batch_size)
                batch = [queue.popleft() for _ in range(n)]
                try:
                    await self._deliver(batch)
                except Exception:  # keep the loop alive whatever one batch does
                    log.exception("audit batch delivery crashed")
                    self._count(self._failed, batch)
            if self._closing:
                return

    async def _deliver(self, batch: list[AuditEvent]) -> None:
        if self._log_fd is not None:
            self._write_log(batch)
        if self._client is None or self.sink_url is None:
            return
        body = _encode(_Batch(batch))
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            retry_after: float | None = None
            timeout = cfg.timeout
            if self._closing:
                timeout = min(timeout, self._deadline - time.monotonic())
                if timeout <= 0:
                    break
            try:
                resp = await self._client.post(self.sink_url, content=body, timeout=timeout)
            except httpx.HTTPError as exc:
                log.warning("audit sink %s: %s (attempt %d)", self.sink_url, type(exc).__name__, attempt + 1)
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    self._count(self._sent, batch)
                    return
                if status not in RETRY_STATUSES and status < 500:
                    log.error("audit sink %s refused %d events: HTTP %d", self.sink_url, len(batch), status)
                    break
                log.warning("audit sink %s: HTTP %d (attempt %d)", self.sink_url, status, attempt + 1)
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt == cfg.max_retries:
                break
            delay = min(cfg.backoff_max, cfg.backoff_initial * 2**attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(cfg.backoff_max, max(delay, retry_after))
            if self._closing and time.monotonic() + delay >= self._deadline:
                break
            await asyncio.sleep(delay)
        self._count(self._failed, batch)

    def _write_log(self, batch: list[AuditEvent]) -> None:
        assert self._log_fd is not None
        chunk = bytearray()
        for event in batch:
            line = _encode(_LogLine(event)) + b"\n"
            # Writes up to PIPE_BUF are atomic, so lines from several workers never interleave.
            if chunk and len(chunk) + len(line) > _PIPE_BUF:
                _write_all(self._log_fd, chunk)
                chunk = bytearray()
            chunk += line
        if chunk:
            _write_all(self._log_fd, chunk)

    @staticmethod
    def _count(children: dict[AuditType, Any], batch: list[AuditEvent]) -> None:
        for kind, n in Counter(e.type for e in batch).items():
            children[kind].inc(n)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # a closed log stream must not stop HTTP delivery


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def create_audit_sink(
    config: AuditConfig, default_hash_key: str, environ: Mapping[str, str] | None = None
) -> AuditDelivery | None:
    """The worker's audit sink, or None when audit delivery is off or has no destination.

    Also sets the key that hashes user ids in every audit event.
    """
    env = os.environ if environ is None else environ
    set_user_hash_key(config.user_hash_key or default_hash_key)
    if not config.enabled:
        return None
    url = env.get(SINK_URL_ENV) or config.sink_url or None
    token = env.get(SINK_TOKEN_ENV) or config.sink_token or None
    if url is not None and not URL_RE.match(url):
        # Crashing every worker over a bad variable would take the gateway down instead;
        # the events still reach the JSON log when it is on.
        print(f"gatehouse: audit: ignoring {SINK_URL_ENV}: not an http(s) URL", file=sys.stderr)
        url = None
    if url is None and not config.log:
        return None
    return AuditDelivery(config, url, token)
