"""Typed configuration of API keys and service tokens: key sets (``plugins.auth.key_sets``).

A key set names the header its keys arrive in and holds keys as SHA-256 digests, never
as the keys themselves::

    plugins:
      auth:
        key_sets:
          callbacks:
            header: x-service-token
            keys:
              - id: media-worker-2025a
                hash: ${MEDIA_WORKER_KEY_HASH}      # sha256:<64 hex digits>
                subject: media-worker
                tier: internal
                scopes: [media:callback]
            redis: true                             # and keys managed through the admin API

docs/api-keys.md is the reference.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated

import msgspec

from hotpath.structs import Seconds, Strict

# The text form of a key's digest: "sha256:" and 64 lower-case hex digits.
HASH_PREFIX = "sha256:"
KeyHash = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
KeySetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
# Subjects travel in x-user-id and label rate-limit counters: one line, bounded.
Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Tier = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
# Roles and scopes travel in headers (comma- and space-separated), so they are plain tokens:
# visible ASCII except space, ',', '"' and '\'. plugins.auth.config uses it for JWT claims too.
NAME_PATTERN = r"^[!#-+\--\[\]-~]{1,128}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")]
Expiry = Annotated[datetime, msgspec.Meta(tz=True)]

# Keys shorter than this are refused when the admin API imports one, and keys it makes
# are longer: a key is a secret to be guessed, not a password to be remembered.
MIN_KEY_BYTES = 16
_KEY_CHARS = re.compile(rb"[\x21-\x7e]+")


def digest_text(key: bytes) -> str:
    """The text form of a key's digest, as ``hash:`` holds it."""
    return HASH_PREFIX + hashlib.sha256(key).hexdigest()


def well_formed(key: bytes, max_bytes: int) -> bool:
    """Whether a presented key can be one at all: visible ASCII, within the bound."""
    return 0 < len(key) <= max_bytes and _KEY_CHARS.fullmatch(key) is not None


class ApiKeyConfig(Strict, frozen=True, kw_only=True):
    """One key of a set: its digest and the identity it carries."""

    # Names the key in the admin API, logs and audit events (never the key itself).
    id: KeyId
    hash: KeyHash
    subject: Subject
    # None: the set's default_tier.
    tier: Tier | None = None
    scopes: tuple[Name, ...] = ()
    roles: tuple[Name, ...] = ()
    # An RFC 3339 timestamp with a zone (2026-06-30T00:00:00Z); None: no expiry.
    expires_at: Expiry | None = None


class KeySetConfig(Strict, frozen=True, kw_only=True):
    # The request header the keys arrive in; it never reaches an upstream.
    header: HeaderName = "x-api-key"
    keys: tuple[ApiKeyConfig, ...] = ()
    # Also look keys up in Redis (created and revoked through the admin API).
    redis: bool = False
    # Tier of a key that names none.
    default_tier: Tier = "free"
    # Keys from Redis remembered per worker (found ones and unknown ones); 0 disables.
    cache_size: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 4096
    # How long a worker trusts what Redis said about a key: a revocation reaches every
    # worker within this time.
    cache_ttl: Seconds = 5.0
    # Longer header values are refused before they are hashed.
    max_key_bytes: Annotated[int, msgspec.Meta(ge=MIN_KEY_BYTES, le=4096)] = 256

    def __post_init__(self) -> None:
        if not self.keys and not self.redis:
            raise ValueError("a key set needs keys, or redis: true (keys managed through the admin API)")
        ids: set[str] = set()
        hashes: set[str] = set()
        for i, key in enumerate(self.keys):
            if key.id in ids:
                raise ValueError(f"keys[{i}]: id '{key.id}' is used twice")
            if key.hash in hashes:
                raise ValueError(f"keys[{i}]: the same hash is given twice (ids must name different keys)")
            ids.add(key.id)
            hashes.add(key.hash)
        if self.header == "authorization":
            raise ValueError("header: 'authorization' carries bearer tokens; API keys need a header of their own")
