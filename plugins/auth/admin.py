"""Operations for the admin API on API keys: list key sets and keys, create a key (made
here and shown once, or imported by its digest), revoke one.

Exceptions (each carries a message fit for an API response):

- ``UnknownKeySet``: no such key set (404);
- ``NotManaged``: the set keeps its keys in the configuration only (``redis: false``), so
  keys cannot be created or revoked at run time (409);
- ``KeyExists`` (from ``plugins.auth.key_store``): the id or the key is taken (409);
- ``ValueError``: a field of the request is invalid (400);
- Redis errors and timeouts propagate (503).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgspec

from plugins.auth.api_key_config import HASH_PREFIX, Expiry, KeyHash, KeyId, KeySetConfig, Name, Subject, Tier
from plugins.auth.api_keys import KeySet
from plugins.auth.config import AuthSettings
from plugins.auth.key_store import KeyExists, KeyStore, StoredKey, expiry_epoch, new_record

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime

__all__ = ["KeyExists", "NotManaged", "UnknownKeySet", "create_key", "key_sets", "list_keys", "revoke_key"]

# Longest a run-time key may live without an expiry being given: none (keys may be
# permanent, like the configuration's), but a requested ttl is bounded to ten years.
MAX_TTL_S = 10 * 365 * 86_400
# Generated keys: a recognisable prefix (secret scanners look for such) and 32 random bytes.
KEY_PREFIX = "ghk_"
ADMIN_TIMEOUT_S = 2.0


class UnknownKeySet(LookupError):
    pass


class NotManaged(Exception):
    pass


class NewKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a create request."""

    subject: Subject
    id: KeyId | None = None
    tier: Tier | None = None
    scopes: tuple[Name, ...] = ()
    roles: tuple[Name, ...] = ()
    expires_at: Expiry | None = None
    ttl: int | None = None
    # Import a key the client already holds, by its digest; otherwise one is made.
    hash: KeyHash | None = None


def _settings(settings: Any) -> AuthSettings:
    return settings if isinstance(settings, AuthSettings) else AuthSettings()


def _set(settings: Any, name: str) -> KeySetConfig:
    found = _settings(settings).key_sets.get(name)
    if found is None:
        known = ", ".join(sorted(_settings(settings).key_sets)) or "none is configured"
        raise UnknownKeySet(f"unknown key set '{name}' (key sets: {known})")
    return found


def _store(runtime: WorkerRuntime, name: str, config: KeySetConfig) -> KeyStore:
    if not config.redis:
        raise NotManaged(f"key set '{name}' keeps its keys in the configuration (redis: false)")
    state = runtime.state
    if state.redis is None:
        raise NotManaged(f"key set '{name}' needs Redis, which is not configured")
    return KeyStore(state.redis, state.keys.feature("apikey"), name, ADMIN_TIMEOUT_S)


def key_sets(settings: Any) -> list[dict[str, Any]]:
    return [
        {"name": name, "header": ks.header, "redis": ks.redis, "configured_keys": len(ks.keys),
         "default_tier": ks.default_tier}
        for name, ks in sorted(_settings(settings).key_sets.items())
    ]


def _row(record: StoredKey, source: str, now: float) -> dict[str, Any]:
    return {
        "id": record.id, "subject": record.subject, "tier": record.tier, "scopes": list(record.scopes),
        "roles": list(record.roles), "expires_at": record.expires_at,
        "expired": record.expires_at is not None and now >= record.expires_at, "source": source,
        "created_at": record.created_at or None,
    }


async def list_keys(runtime: WorkerRuntime, settings: Any, name: str) -> dict[str, Any]:
    """Every key of the set, from the configuration and from Redis (never a key or digest)."""
    config = _set(settings, name)
    now = time.time()
    rows = [
        _row(StoredKey(id=k.id, subject=k.subject, tier=k.tier or config.default_tier, scopes=k.scopes,
                       roles=k.roles, expires_at=expiry_epoch(k.expires_at)), "config", now)
        for k in config.keys
    ]
    if config.redis:
        rows.extend(_row(r, "redis", now) for r in await _store(runtime, name, config).list())
    return {"key_set": name, "keys": rows}


async def create_key(runtime: WorkerRuntime, settings: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Store a key in the set; the answer holds the key itself only when it was made here."""
    config = _set(settings, name)
    store = _store(runtime, name, config)
    try:
        spec = msgspec.convert(body, NewKey, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    now = time.time()
    if spec.expires_at is not None and spec.ttl is not None:
        raise ValueError("give expires_at or ttl, not both")
    expires = expiry_epoch(spec.expires_at)
    if spec.ttl is not None:
        if not 0 < spec.ttl <= MAX_TTL_S:
            raise ValueError(f"ttl must be between 1 and {MAX_TTL_S} seconds")
        expires = now + spec.ttl
    if expires is not None and expires <= now:
        raise ValueError("expires_at is in the past")
    if spec.id is not None and any(k.id == spec.id for k in config.keys):
        raise KeyExists(f"a key with id '{spec.id}' exists in the configuration of key set '{name}'")
    key: str | None = None
    if spec.hash is not None:
        digest_hex = spec.hash[len(HASH_PREFIX):]
    else:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest_hex = hashlib.sha256(key.encode("ascii")).hexdigest()
    key_id = spec.id or f"{spec.subject[:40]}-{secrets.token_hex(4)}"
    record = new_record(key_id, spec.subject, spec.tier or config.default_tier, scopes=spec.scopes,
                        roles=spec.roles, expires_at=expires)
    await store.create(record, digest_hex)
    out = _row(record, "redis", now)
    if key is not None:
        out["key"] = key
    return out


async def revoke_key(runtime: WorkerRuntime, settings: Any, name: str, key_id: str) -> bool:
    """Delete a key from Redis; this worker forgets it at once, the others within the set's
    ``cache_ttl``. False if the set holds no such key in Redis."""
    config = _set(settings, name)
    store = _store(runtime, name, config)
    removed = await store.revoke(key_id)
    local = runtime.get_singleton(f"auth.key_set.{name}")
    if isinstance(local, KeySet):
        local.forget()
    return removed
