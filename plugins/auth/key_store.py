"""API keys kept in Redis: created, listed and revoked through the admin API, looked up by
the auth plugin when a presented key is not one of the configuration's.

Layout under ``<prefix>:v<version>:apikey`` (``SharedState.keys.feature("apikey")``):

- ``{<set>}:k:<hex digest>``: the key's record (JSON), found by the SHA-256 of the key;
- ``{<set>}:ids``: a hash from key id to hex digest, to list and revoke keys by id.

One hash tag per key set, so a set's index and records share a Cluster slot. A record
expires in Redis a day after the key does, so a late request learns "expired" rather than
"unknown"; only digests are stored, never a key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from coredis.tokens import PureToken

from plugins.auth.api_key_config import Expiry, KeyId, Name, Subject, Tier

log = logging.getLogger("gatehouse.auth")

# How long a record outlives its key's expiry in Redis.
EXPIRED_GRACE_S = 86_400


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """One key's record in Redis: who it identifies, and until when (epoch seconds)."""

    id: KeyId
    subject: Subject
    tier: Tier
    scopes: tuple[Name, ...] = ()
    roles: tuple[Name, ...] = ()
    expires_at: float | None = None
    created_at: float = 0.0


class KeyExists(Exception):
    """The id, or the key itself, is already stored in this set."""


_decoder = msgspec.json.Decoder(StoredKey)
_encoder = msgspec.json.Encoder()


def expiry_epoch(value: Expiry | None) -> float | None:
    return value.timestamp() if value is not None else None


class KeyStore:
    """One key set's keys in Redis. Every call is bounded by ``timeout``; Redis errors and
    timeouts propagate (the plugin answers 503, the admin API 503)."""

    __slots__ = ("_client", "_ids", "_prefix", "_timeout", "name")

    def __init__(self, client: Any, base: str, key_set: str, timeout: float) -> None:
        self._client = client
        self.name = key_set
        self._prefix = f"{base}:{{{key_set}}}:k:"
        self._ids = f"{base}:{{{key_set}}}:ids"
        self._timeout = timeout

    def record_key(self, digest_hex: str) -> str:
        return self._prefix + digest_hex

    async def find(self, digest_hex: str) -> StoredKey | None:
        """The record of the key with this digest, or None."""
        async with asyncio.timeout(self._timeout):
            blob = await self._client.get(self.record_key(digest_hex))
        if blob is None:
            return None
        try:
            return _decoder.decode(blob)
        except msgspec.DecodeError as exc:
            log.warning("API key set %s: unreadable record for digest %s...: %s", self.name, digest_hex[:8], exc)
            return None

    async def create(self, record: StoredKey, digest_hex: str) -> None:
        """Store a new key; KeyExists if its id or the key itself is already there."""
        async with asyncio.timeout(self._timeout):
            if not await self._client.hsetnx(self._ids, record.id, digest_hex):
                raise KeyExists(f"a key with id '{record.id}' exists in key set '{self.name}'")
            pxat = None
            if record.expires_at is not None:
                pxat = int((record.expires_at + EXPIRED_GRACE_S) * 1000)
            stored = await self._client.set(
                self.record_key(digest_hex), _encoder.encode(record), condition=PureToken.NX, pxat=pxat
            )
            if not stored:
                await self._client.hdel(self._ids, [record.id])
                raise KeyExists(f"this key is already stored in key set '{self.name}' under another id")

    async def list(self) -> list[StoredKey]:
        """Every stored key (expired ones included, until Redis drops them); index entries
        whose record is gone are removed on the way."""
        async with asyncio.timeout(self._timeout):
            index: dict[bytes, bytes] = await self._client.hgetall(self._ids)
            if not index:
                return []
            ids = list(index)
            blobs = await self._client.mget([self.record_key(index[i].decode()) for i in ids])
            out: list[StoredKey] = []
            gone: list[bytes] = []
            for key_id, blob in zip(ids, blobs, strict=True):
                if blob is None:
                    gone.append(key_id)
                    continue
                try:
                    out.append(_decoder.decode(blob))
                except msgspec.DecodeError:
                    continue
            if gone:
                await self._client.hdel(self._ids, gone)
        return sorted(out, key=lambda r: (r.subject, r.created_at, r.id))

    async def revoke(self, key_id: str) -> bool:
        """Delete the key with this id; False if there is none."""
        async with asyncio.timeout(self._timeout):
            digest = await self._client.hget(self._ids, key_id)
            if digest is None:
                return False
            await self._client.delete([self.record_key(digest.decode())])
            await self._client.hdel(self._ids, [key_id])
        return True


def new_record(
    key_id: str,
    subject: str,
    tier: str,
    *,
    scopes: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
    expires_at: float | None = None,
) -> StoredKey:
    """A record, validated as the configuration's keys are (ValueError names the field)."""
    try:
        return msgspec.convert(
            {"id": key_id, "subject": subject, "tier": tier, "scopes": list(scopes), "roles": list(roles),
             "expires_at": expires_at, "created_at": time.time()},
            StoredKey,
        )
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
