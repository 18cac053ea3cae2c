"""JWS compact token verification with an injected clock and a bounded cache.

The order of checks is the defence: the size bound comes before any parsing, the header is
vetted (algorithm from the provider's allow-list only, no ``crit``, no key embedded or
referenced by the token itself, a sane ``kid``) before any key is looked up, and the
signature is checked before a single claim is believed. The token's ``alg`` never chooses
a key type: a key verifies only the algorithms of its own type.

A verified token is cached (bounded, oldest evicted first) together with the identity and
the upstream headers it yields, so a repeat costs one dict lookup and an ``exp`` re-check.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

from hotpath.context import Header, Identity
from plugins.auth.config import NAME_PATTERN, TIER_RE, ProviderConfig
from plugins.auth.errors import InvalidToken, KeysUnavailable, Reason
from plugins.auth.keys import MAX_KID_CHARS, KeyRing, verify_signature

Clock = Callable[[], float]

_COMPACT: Final = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Header parameters through which a token would pick its own verification key.
_EMBEDDED_KEY_PARAMS: Final = ("jwk", "jku", "x5u", "x5c")
_KID_CHARS: Final = re.compile(r"[\x21-\x7e]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_NAME: Final = re.compile(NAME_PATTERN)
_MAX_SUBJECT: Final = 256
_MAX_LIST: Final = 256

USER_ID: Final = b"x-user-id"
USER_ROLES: Final = b"x-user-roles"
USER_SCOPES: Final = b"x-user-scopes"
USER_TIER: Final = b"x-user-tier"


class Verified:
    """A verified token's result, shared by every request that presents the token."""

    __slots__ = ("expires", "headers", "identity")

    def __init__(self, identity: Identity, headers: list[Header], expires: float | None) -> None:
        self.identity = identity
        self.headers = headers
        # exp plus leeway: the instant the cached entry stops being valid.
        self.expires = expires


def _claim_getter(path: str) -> Callable[[dict[str, Any]], Any]:
    parts = tuple(path.split("."))
    if len(parts) == 1:
        name = parts[0]
        return lambda claims: claims.get(name)

    def get(claims: dict[str, Any]) -> Any:
        node: Any = claims
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return get


def _b64json(segment: bytes) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise InvalidToken(Reason.MALFORMED) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any, separators: str) -> frozenset[str]:
    """Roles or scopes from a list or a separated string; unrepresentable names are dropped
    (fewer permissions, never more)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: list[Any] = re.split(separators, value)
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidToken(Reason.BAD_CLAIM)
    if len(items) > _MAX_LIST:
        raise InvalidToken(Reason.BAD_CLAIM)
    return frozenset(v for v in items if isinstance(v, str) and _NAME.match(v))


class TokenVerifier:
    __slots__ = (
        "_algorithms", "_audiences", "_cache", "_cache_size", "_clock", "_default_tier", "_issuers",
        "_leeway", "_max_bytes", "_required", "_roles", "_scopes", "_subject", "_tier", "ring",
    )

    def __init__(self, config: ProviderConfig, ring: KeyRing, clock: Clock = time.time) -> None:
        self.ring = ring
        self._clock = clock
        self._algorithms = frozenset(config.algorithms)
        self._max_bytes = config.max_token_bytes
        self._leeway = config.leeway
        self._issuers = frozenset(config.issuers)
        self._audiences = frozenset(config.audiences)
        self._required = tuple(_claim_getter(c) for c in config.required_claims)
        self._subject = _claim_getter(config.subject_claim)
        self._tier = _claim_getter(config.tier_claim)
        self._roles = _claim_getter(config.roles_claim)
        self._scopes = _claim_getter(config.scopes_claim)
        self._default_tier = config.default_tier
        self._cache_size = config.cache_size
        self._cache: dict[bytes, Verified] = {}

    def set_ring(self, ring: KeyRing) -> None:
        """Swap in new keys; a removed key takes its cached tokens with it."""
        removed = bool(self.ring.kids - ring.kids)
        self.ring = ring
        if removed:
            self._cache.clear()

    @property
    def cached(self) -> int:
        return len(self._cache)

    def verify(self, token: bytes) -> Verified:
        """The verified result, or InvalidToken / UnknownKey / KeysUnavailable."""
        hit = self._cache.get(token)
        if hit is not None:
            if hit.expires is not None and self._clock() >= hit.expires:
                self._cache.pop(token, None)
                raise InvalidToken(Reason.EXPIRED)
            return hit
        result = self._verify(token)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Oldest first: dicts keep insertion order, so this is FIFO eviction.
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[token] = result
        return result

    def _verify(self, token: bytes) -> Verified:
        if len(token) > self._max_bytes:
            raise InvalidToken(Reason.OVERSIZED)
        if not _COMPACT.fullmatch(token):
            raise InvalidToken(Reason.MALFORMED)
        signing_input, _, sig_b64 = token.rpartition(b".")
        header_b64, _, payload_b64 = signing_input.partition(b".")
        header = _b64json(header_b64)
        if not isinstance(header, dict):
            raise InvalidToken(Reason.MALFORMED)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken(Reason.ALG_NOT_ALLOWED)
        if "crit" in header:
            raise InvalidToken(Reason.CRIT)
        for param in _EMBEDDED_KEY_PARAMS:
            if param in header:
                raise InvalidToken(Reason.EMBEDDED_KEY)
        kid = header.get("kid")
        if kid is not None and (
            not isinstance(kid, str) or len(kid) > MAX_KID_CHARS or not _KID_CHARS.fullmatch(kid)
        ):
            raise InvalidToken(Reason.BAD_KID)
        ring = self.ring
        if not ring.loaded:
            raise KeysUnavailable()
        key = ring.find(kid, alg)
        try:
            signature = base64.urlsafe_b64decode(sig_b64 + b"=" * (-len(sig_b64) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken(Reason.MALFORMED) from None
        if not verify_signature(alg, key, signing_input, signature):
            raise InvalidToken(Reason.BAD_SIGNATURE)
        claims = _b64json(payload_b64)
        if not isinstance(claims, dict):
            raise InvalidToken(Reason.MALFORMED)
        return self._admit(claims)

    def _admit(self, claims: dict[str, Any]) -> Verified:
        now = self._clock()
        leeway = self._leeway
        for get in self._required:
            if get(claims) is None:
                raise InvalidToken(Reason.MISSING_CLAIM)
        expires: float | None = None
        exp = claims.get("exp")
        if exp is not None:
            if not _is_number(exp):
                raise InvalidToken(Reason.BAD_CLAIM)
            expires = exp + leeway
            if now >= expires:
                raise InvalidToken(Reason.EXPIRED)
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                raise InvalidToken(Reason.BAD_CLAIM)
            if now + leeway < nbf:
                raise InvalidToken(Reason.NOT_YET_VALID)
        iat = claims.get("iat")
        if iat is not None and not _is_number(iat):
            raise InvalidToken(Reason.BAD_CLAIM)
        if self._issuers:
            iss = claims.get("iss")
            if not isinstance(iss, str) or iss not in self._issuers:
                raise InvalidToken(Reason.BAD_ISSUER)
        if self._audiences:
            aud = claims.get("aud")
            if isinstance(aud, str):
                ok = aud in self._audiences
            elif isinstance(aud, list):
                ok = any(isinstance(a, str) and a in self._audiences for a in aud)
            else:
                ok = False
            if not ok:
                raise InvalidToken(Reason.BAD_AUDIENCE)
        subject = self._subject(claims)
        if subject is None:
            raise InvalidToken(Reason.MISSING_CLAIM)
        if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT or _CONTROL.search(subject):
            raise InvalidToken(Reason.BAD_CLAIM)
        tier = self._tier(claims)
        if tier is None:
            tier = self._default_tier
        elif not isinstance(tier, str) or not TIER_RE.fullmatch(tier):
            raise InvalidToken(Reason.BAD_CLAIM)
        roles = _names(self._roles(claims), r"[\s,]+")
        scopes = _names(self._scopes(claims), r"\s+")
        headers: list[Header] = [(USER_ID, subject.encode("utf-8")), (USER_TIER, tier.encode("ascii"))]
        if roles:
            headers.append((USER_ROLES, ",".join(sorted(roles)).encode("ascii")))
        if scopes:
            headers.append((USER_SCOPES, " ".join(sorted(scopes)).encode("ascii")))
        return Verified(Identity(subject, tier, roles, scopes, claims), headers, expires)
