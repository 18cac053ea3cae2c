"""Asynchronous JWKS fetching: cache, background refresh, and an unknown-kid cooldown.

One ``JwksSource`` per provider per worker. Keys are fetched with httpx (never on the
request path except when a token names a kid nobody knows), on a fixed interval with
jitter, and on demand for an unknown kid at most once per cooldown (so the identity
provider sees at most one fetch per refresh interval plus one per cooldown, per worker).
Concurrent demands join the fetch already in flight. A failed fetch keeps the last good
keys.

Every fetch is counted in ``gatehouse_jwks_fetches{provider, result}``: ``ok``, ``error``,
and ``cooldown`` for an unknown-kid fetch the cooldown suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import httpx
import orjson

from plugins.auth.config import ProviderConfig
from plugins.auth.keys import UnusableKey, VerifyKey, parse_jwks
from plugins.auth.metrics import JWKS_FETCHES

log = logging.getLogger("gatehouse.auth")

KeysCallback = Callable[[list[VerifyKey]], None]


class FetchError(Exception):
    """The JWKS endpoint answered with something other than a usable key set."""


class JwksSource:
    def __init__(
        self,
        provider: str,
        url: str,
        config: ProviderConfig,
        on_keys: KeysCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.url = url
        self._allowed = frozenset(config.algorithms)
        self._min_rsa_bits = config.min_rsa_bits
        self._interval = config.jwks_refresh_interval
        self._cooldown = config.jwks_unknown_kid_cooldown
        self._timeout = config.jwks_timeout
        self._max_bytes = config.jwks_max_bytes
        self._on_keys = on_keys
        self._clock = clock
        # When the last fetch caused by an unknown kid started. Background refreshes do not
        # count: a key published just after one must not wait out a cooldown it did not use.
        self._last_kid_fetch = float("-inf")
        self._inflight: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._ok = JWKS_FETCHES.labels(provider, "ok")
        self._error = JWKS_FETCHES.labels(provider, "error")
        self._suppressed = JWKS_FETCHES.labels(provider, "cooldown")

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            headers={"accept": "application/json", "user-agent": "gatehouse-jwks"},
        )
        self._task = asyncio.create_task(self._refresh_loop(), name=f"jwks-refresh-{self.provider}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _refresh_loop(self) -> None:
        while True:
            ok = await self.refresh()
            delay = self._interval if ok else min(self._interval, self._cooldown)
            # Jitter spreads the workers' (and pods') refreshes over time.
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch in flight; True if the keys were replaced."""
        if self._inflight is None:
            fut = asyncio.ensure_future(self._fetch())
            self._inflight = fut
            fut.add_done_callback(self._clear_inflight)
        # shield: a cancelled waiting request must not cancel the fetch others wait on.
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, fut: asyncio.Future[bool]) -> None:
        if self._inflight is fut:
            self._inflight = None

    async def refresh_for_unknown_kid(self) -> bool:
        """A token named a kid no key has: refresh unless the cooldown forbids it."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        now = self._clock()
        if now - self._last_kid_fetch < self._cooldown:
            self._suppressed.inc()
            return False
        self._last_kid_fetch = now
        return await self.refresh()

    async def _fetch(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                keys = await self._download()
        except (httpx.HTTPError, FetchError, UnusableKey, orjson.JSONDecodeError, TimeoutError) as exc:
            self._error.inc()
            log.warning("JWKS fetch for provider %s from %s failed: %s", self.provider, self.url,
                        str(exc) or type(exc).__name__)
            return False
        self._ok.inc()
        self._on_keys(keys)
        return True

    async def _download(self) -> list[VerifyKey]:
        if self._client is None:
            raise FetchError("the JWKS client is not started")
        async with self._client.stream("GET", self.url) as resp:
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise FetchError(f"the document exceeds jwks_max_bytes ({self._max_bytes})")
        keys = parse_jwks(orjson.loads(body), self._allowed, self._min_rsa_bits, self.url)
        if not keys:
            raise FetchError("the document holds no usable key")
        return keys
