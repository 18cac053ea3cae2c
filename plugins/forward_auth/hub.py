"""The calls to the authorization services, one hub per worker.

A description the worker has no answer for is asked about once: concurrent requests with
the same description wait on the call in flight (single-flight). With Redis, the worker
first asks Redis, which either has the answer (another worker or pod asked), gives this
worker the claim to ask, or says another caller holds the claim; then the worker asks
again every ``POLL_S`` until the answer is there or the claim is gone. Redis trouble only
costs the sharing: the worker then asks the service itself.

Exceptions: ``CallFailed`` (``kind`` is ``timeout`` or ``error``) when the service did not
give a usable answer in time; the plugin applies the route's failure mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, Final

import httpx

from hotpath.context import Header
from plugins.forward_auth.answers import Answer, Answers, decode, encode
from plugins.forward_auth.config import ForwardAuthSettings
from plugins.forward_auth.shared import CLAIMED, FOUND, SharedAnswers

log = logging.getLogger("gatehouse.forward_auth")

POLL_S: Final = 0.01
# A claim outlives the call's timeout by this much, so a slow answer is still stored
# under it; a caller that died frees the description after it.
CLAIM_MARGIN_S: Final = 0.5
# The Redis calls of the sharing: short, since the service itself is the way out.
REDIS_TIMEOUT_S: Final = 0.25
HUB_KEY: Final = "forward_auth.hub"


class CallFailed(Exception):
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Target:
    """One route's call: where to, how long, which answer headers to keep, how long to
    keep an answer, and the counters of its calls and of the answers it did not call for."""

    __slots__ = ("joined", "keep", "results", "shared", "timeout", "ttl", "url")

    def __init__(self, url: str, timeout: float, keep: tuple[str, ...], ttl: float, results: dict[str, Any],
                 shared: Any, joined: Any) -> None:
        self.url = url
        self.timeout = timeout
        self.keep = tuple((name, name.encode("ascii")) for name in keep)
        self.ttl = ttl
        self.results = results
        self.shared = shared
        self.joined = joined


class Hub:
    def __init__(self, settings: ForwardAuthSettings, redis: Any = None, key_base: str = "") -> None:
        self._settings = settings
        self.answers = Answers(settings.cache_size)
        self._inflight: dict[bytes, asyncio.Future[Answer]] = {}
        self._shared = SharedAnswers(redis, key_base) if redis is not None and settings.shared else None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=self._settings.max_connections,
                              max_keepalive_connections=self._settings.max_connections)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits, follow_redirects=False,
                                         headers={"user-agent": "gatehouse-forward-auth"})

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def answer(self, target: Target, key: bytes, request_id: str) -> Answer:
        """The answer for a description, from a call in flight, Redis or a call of our own."""
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._resolve(target, key, request_id))
            self._inflight[key] = fut
            fut.add_done_callback(lambda done: self._finished(key, done))
        else:
            target.joined.inc()
        # shield: a request that gives up must not cancel what the others wait on.
        return await asyncio.shield(fut)

    def _finished(self, key: bytes, fut: asyncio.Future[Answer]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()  # retrieved, even when every waiter has gone

    async def _resolve(self, target: Target, key: bytes, request_id: str) -> Answer:
        shared = self._shared if target.ttl > 0 else None
        digest = ""
        claimed = False
        if shared is not None:
            digest = hashlib.sha256(target.url.encode() + b"\0" + key).hexdigest()[:40]
            found = await self._from_shared(shared, digest, target)
            if isinstance(found, Answer):
                target.shared.inc()
                self.answers.put(key, found)
                return found
            claimed = found
            if not claimed:
                shared = None  # Redis is unreachable or the holder vanished: call, share nothing
        try:
            answer = await self._call(target, key, request_id)
        except CallFailed:
            if claimed and shared is not None:
                await self._settle(shared, digest, b"", 0)
            raise
        self.answers.put(key, answer)
        if claimed and shared is not None:
            ttl_ms = int((answer.expires - time.time()) * 1000)
            await self._settle(shared, digest, encode(answer), max(ttl_ms, 0))
        return answer

    async def _from_shared(self, shared: SharedAnswers, digest: str, target: Target) -> Answer | bool:
        """The shared answer, or whether this worker now holds the claim to ask."""
        claim_ms = int((target.timeout + CLAIM_MARGIN_S) * 1000)
        deadline = time.monotonic() + target.timeout + CLAIM_MARGIN_S
        while True:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    state, blob = await shared.claim(digest, claim_ms)
            except Exception as exc:  # coredis raises many types (and ExceptionGroups) when Redis is down
                log.debug("forward auth: Redis unavailable for sharing: %s", type(exc).__name__)
                return False
            if state == FOUND and blob is not None:
                answer = decode(blob)
                if answer is not None and answer.expires > time.time():
                    return answer
                return False
            if state == CLAIMED:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def _settle(self, shared: SharedAnswers, digest: str, blob: bytes, ttl_ms: int) -> None:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                await shared.settle(digest, blob, ttl_ms)
        except Exception as exc:
            log.debug("forward auth: could not share an answer: %s", type(exc).__name__)

    async def _call(self, target: Target, body: bytes, request_id: str) -> Answer:
        client = self._client
        if client is None:
            raise CallFailed("error")
        headers = {"content-type": "application/json", "x-request-id": request_id}
        limit = self._settings.max_answer_bytes
        try:
            async with asyncio.timeout(target.timeout):
                async with client.stream("POST", target.url, content=body, headers=headers) as resp:
                    status = resp.status_code
                    kept: list[Header] = []
                    if 200 <= status < 300:
                        for name, raw in target.keep:
                            value = resp.headers.get(name)
                            if value is not None:
                                kept.append((raw, value.encode("latin-1")))
                    # Read (and so reuse the connection) unless the answer is oversized.
                    size = 0
                    async for chunk in resp.aiter_raw():
                        size += len(chunk)
                        if size > limit:
                            break
        except (TimeoutError, httpx.TimeoutException):
            target.results["timeout"].inc()
            raise CallFailed("timeout") from None
        except (httpx.HTTPError, UnicodeEncodeError) as exc:
            target.results["error"].inc()
            log.warning("forward auth: call to %s failed: %s", target.url, type(exc).__name__)
            raise CallFailed("error") from None
        if 200 <= status < 300:
            target.results["allowed"].inc()
        elif status in (401, 403):
            target.results["denied"].inc()
        else:
            target.results["error"].inc()
            log.warning("forward auth: %s answered %d", target.url, status)
            raise CallFailed("error")
        return Answer(status, kept, time.time() + target.ttl)
