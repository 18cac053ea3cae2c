"""API keys and service tokens: one ``KeySet`` per configured set and worker.

A presented key is hashed (SHA-256) and looked up by its digest, first among the keys of
the configuration, then, for a set with ``redis: true``, in a bounded per-worker cache of
what Redis said, and only then in Redis itself, where concurrent lookups of one digest
share one call. Keys are never stored or compared as themselves: the lookup is by digest
and the final comparison of digests is ``hmac.compare_digest``, so neither the table nor
the comparison tells an attacker how much of a guess was right.

Exceptions (caught by the plugin):

- ``KeyRefused``: the key is refused for good; ``reason`` is one of ``MALFORMED``,
  ``UNKNOWN``, ``EXPIRED``. Answered 401 ``AUTH_FAILED``.
- ``StoreUnavailable``: Redis did not answer in time about a key it alone could know.
  Answered 503, because the key may well be fine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Final

from hotpath.context import Header, Identity
from plugins.auth.api_key_config import HASH_PREFIX, KeySetConfig, well_formed
from plugins.auth.key_store import KeyStore, StoredKey, expiry_epoch
from plugins.auth.metrics import API_KEY_LOOKUPS
from plugins.auth.verifier import USER_ID, USER_ROLES, USER_SCOPES, USER_TIER, Verified

log: Final = logging.getLogger("gatehouse.auth")

MISSING: Final = "missing_key"
MALFORMED: Final = "malformed_key"
UNKNOWN: Final = "unknown_key"
EXPIRED: Final = "expired_key"
sha256: Final = hashlib.sha256
compare_digest: Final = hmac.compare_digest

Clock = Callable[[], float]


class KeyRefused(Exception):
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(Exception):
    """Redis could not be asked about a key."""


class Known:
    """A key of the configuration: its digest and the identity it yields."""

    __slots__ = ("digest", "verified")

    def __init__(self, digest: bytes, verified: Verified) -> None:
        self.digest = digest
        self.verified = verified


class Remembered:
    """What Redis said about a digest (None: no such key), and until when to believe it."""

    __slots__ = ("until", "verified")

    def __init__(self, verified: Verified | None, until: float) -> None:
        self.verified = verified
        self.until = until


def identity_of(
    key_set: str,
    key_id: str,
    subject: str,
    tier: str,
    roles: tuple[str, ...],
    scopes: tuple[str, ...],
    expires_at: float | None,
) -> Verified:
    """The identity a key yields and the upstream headers that carry it, as for a JWT."""
    role_set = frozenset(roles)
    scope_set = frozenset(scopes)
    headers: list[Header] = [(USER_ID, subject.encode("utf-8")), (USER_TIER, tier.encode("ascii"))]
    if role_set:
        headers.append((USER_ROLES, ",".join(sorted(role_set)).encode("ascii")))
    if scope_set:
        headers.append((USER_SCOPES, " ".join(sorted(scope_set)).encode("ascii")))
    claims = {"key_id": key_id, "key_set": key_set}
    identity = Identity(subject, tier, role_set, scope_set, claims, "api_key")
    return Verified(identity, headers, expires_at)


class KeySet:
    """One key set's keys, for every route of a worker that accepts them."""

    __slots__ = (
        "_cache",
        "_cache_size",
        "_clock",
        "_error",
        "_found",
        "_inflight",
        "_max_bytes",
        "_missing",
        "_monotonic",
        "_static",
        "_ttl",
        "default_tier",
        "header",
        "name",
        "store",
    )

    def __init__(
        self,
        name: str,
        config: KeySetConfig,
        store: KeyStore | None,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.header = config.header.encode("ascii")
        self.default_tier = config.default_tier
        self.store = store
        self._clock = clock
        self._monotonic = monotonic
        self._max_bytes = config.max_key_bytes
        self._ttl = config.cache_ttl
        self._cache_size = config.cache_size
        self._static: dict[bytes, Known] = {}
        for key in config.keys:
            digest = bytes.fromhex(key.hash[len(HASH_PREFIX):])
            verified = identity_of(name, key.id, key.subject, key.tier or config.default_tier, key.roles,
                                   key.scopes, expiry_epoch(key.expires_at))
            self._static[digest] = Known(digest, verified)
        self._cache: dict[bytes, Remembered] = {}
        self._inflight: dict[bytes, asyncio.Future[Remembered]] = {}
        self._found = API_KEY_LOOKUPS.labels(name, "found")
        self._missing = API_KEY_LOOKUPS.labels(name, "unknown")
        self._error = API_KEY_LOOKUPS.labels(name, "error")

    @property
    def cached(self) -> int:
        return len(self._cache)

    def check(self, key: bytes) -> Verified | bytes:
        """The key's identity, or its digest when only Redis can tell (then ``lookup``).
        Raises KeyRefused."""
        if not well_formed(key, self._max_bytes):
            raise KeyRefused(MALFORMED)
        digest = sha256(key).digest()
        known = self._static.get(digest)
        if known is not None:
            if not compare_digest(known.digest, digest):
                raise KeyRefused(UNKNOWN)
            return self._current(known.verified)
        if self.store is None:
            raise KeyRefused(UNKNOWN)
        remembered = self._cache.get(digest)
        if remembered is not None and self._monotonic() < remembered.until:
            return self._answer(remembered)
        return digest

    async def lookup(self, digest: bytes) -> Verified:
        """Ask Redis about a digest; concurrent lookups of one digest share one call.
        Raises KeyRefused or StoreUnavailable."""
        fut = self._inflight.get(digest)
        if fut is None:
            fut = asyncio.ensure_future(self._fetch(digest))
            self._inflight[digest] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(digest, None))
        # shield: a request that gives up must not cancel what the others wait on.
        remembered = await asyncio.shield(fut)
        return self._answer(remembered)

    def _answer(self, remembered: Remembered) -> Verified:
        verified = remembered.verified
        if verified is None:
            raise KeyRefused(UNKNOWN)
        return self._current(verified)

    def _current(self, verified: Verified) -> Verified:
        expires = verified.expires
        if expires is not None and self._clock() >= expires:
            raise KeyRefused(EXPIRED)
        return verified

    async def _fetch(self, digest: bytes) -> Remembered:
        store = self.store
        assert store is not None
        try:
            record = await store.find(digest.hex())
        except Exception as exc:  # coredis raises many types (and ExceptionGroups) when Redis is down
            self._error.inc()
            log.warning("API key set %s: Redis lookup failed: %s", self.name, type(exc).__name__)
            raise StoreUnavailable() from None
        remembered = Remembered(self._verified(record) if record is not None else None, self._monotonic() + self._ttl)
        (self._found if record is not None else self._missing).inc()
        if self._cache_size:
            cache = self._cache
            if len(cache) >= self._cache_size:
                # Oldest first: dicts keep insertion order, so this is FIFO eviction.
                cache.pop(next(iter(cache)), None)
            cache[digest] = remembered
        return remembered

    def _verified(self, record: StoredKey) -> Verified:
        return identity_of(self.name, record.id, record.subject, record.tier, record.roles, record.scopes,
                           record.expires_at)

    def forget(self) -> None:
        """Drop what this worker remembers from Redis (after a revocation it made)."""
        self._cache.clear()
