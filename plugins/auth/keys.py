"""Verification keys: parsed once from config, PEM files or JWKS documents.

A ``KeyRing`` is immutable and answers one question on the hot path: which key verifies
a token with this ``kid`` and ``alg``. A key only ever verifies the algorithm family of
its own type (an RSA key never checks an HS256 MAC), which is what defeats the classic
"HS256 signed with the RS256 public key" confusion even in a provider that allows both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm as JwtAlgorithm
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from plugins.auth.config import HMAC_ALGORITHMS
from plugins.auth.errors import InvalidToken, Reason, UnknownKey

log: Final = logging.getLogger("gatehouse.auth")

# pyjwt's implementations, resolved once; "none" is deliberately absent.
SUPPORTED: Final[dict[str, JwtAlgorithm]] = {
    name: impl for name, impl in get_default_algorithms().items()
    if name in {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                "ES256", "ES384", "ES512"}
}
_EC_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MAX_JWKS_KEYS: Final = 64
MAX_KID_CHARS: Final = 256


class UnusableKey(ValueError):
    """A key that cannot be used (bad PEM, weak RSA key, unsupported JWK)."""


class VerifyKey:
    """One key and the algorithms it may verify."""

    __slots__ = ("algorithms", "key", "kid")

    def __init__(self, kid: str | None, key: Any, algorithms: frozenset[str]) -> None:
        self.kid = kid
        self.key = key
        self.algorithms = algorithms


def algorithms_for(key: Any, min_rsa_bits: int) -> frozenset[str]:
    """The algorithms a key's type allows (before the provider's own allow-list)."""
    if isinstance(key, bytes):
        return frozenset(a for a in HMAC_ALGORITHMS)
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < min_rsa_bits:
            raise UnusableKey(f"RSA key of {key.key_size} bits is below min_rsa_bits ({min_rsa_bits})")
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset(a for a, curve in _EC_CURVES.items() if key.curve.name == curve)
    raise UnusableKey(f"unsupported key type {type(key).__name__}")


def hmac_key(secret: bytes, allowed: Iterable[str]) -> VerifyKey:
    return VerifyKey(None, secret, frozenset(allowed) & HMAC_ALGORITHMS)


def pem_key(kid: str | None, pem: bytes, allowed: frozenset[str], min_rsa_bits: int) -> VerifyKey:
    try:
        if b"BEGIN CERTIFICATE" in pem:
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except ValueError as exc:
        raise UnusableKey(f"not a PEM public key or certificate: {exc}") from None
    algs = algorithms_for(key, min_rsa_bits) & allowed
    if not algs:
        raise UnusableKey("the key's type matches none of the provider's algorithms")
    return VerifyKey(kid, key, algs)


def jwk_key(jwk: Mapping[str, Any], allowed: frozenset[str], min_rsa_bits: int) -> VerifyKey:
    """A key from one JWKS entry; raises UnusableKey for entries that must be skipped."""
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS):
        raise UnusableKey("invalid kid")
    if jwk.get("use", "sig") != "sig":
        raise UnusableKey("key is not for signatures")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not include verify")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            key: Any = RSAAlgorithm.from_jwk(dict(jwk))
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(dict(jwk))
        else:
            # Symmetric ("oct") keys have no place in a published key set.
            raise UnusableKey(f"unsupported kty {kty!r}")
    except UnusableKey:
        raise
    except Exception as exc:  # pyjwt raises several types for bad key material
        raise UnusableKey(f"unusable {kty} key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()  # a leaked private part is never needed to verify
    algs = algorithms_for(key, min_rsa_bits) & allowed
    alg = jwk.get("alg")
    if alg is not None:
        algs = algs & {alg} if isinstance(alg, str) else frozenset()
    if not algs:
        raise UnusableKey("the key allows none of the provider's algorithms")
    return VerifyKey(kid, key, algs)


def parse_jwks(doc: Any, allowed: frozenset[str], min_rsa_bits: int, source: str) -> list[VerifyKey]:
    """Usable keys of a JWKS document; unusable entries are logged and skipped."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise UnusableKey("not a JWKS document (no 'keys' list)")
    entries = doc["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise UnusableKey(f"more than {MAX_JWKS_KEYS} keys")
    keys: list[VerifyKey] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        try:
            keys.append(jwk_key(entry, allowed, min_rsa_bits))
        except UnusableKey as exc:
            log.warning("JWKS %s: skipping key %d (kid=%r): %s", source, i, entry.get("kid"), exc)
    return keys


class KeyRing:
    """An immutable set of keys indexed for lookup by (kid, alg)."""

    __slots__ = ("_by_kid", "_kidless", "_only", "kids", "loaded")

    def __init__(self, keys: Iterable[VerifyKey], *, loaded: bool = True) -> None:
        keys = list(keys)
        self.loaded = loaded
        self._by_kid: dict[str, VerifyKey] = {}
        for k in keys:
            if k.kid is not None:
                self._by_kid.setdefault(k.kid, k)  # first wins: duplicate kids never shadow
        self.kids = frozenset(self._by_kid)
        # Keys configured without a kid verify tokens whose kid matches no other key.
        self._kidless: dict[str, VerifyKey] = {}
        # For tokens without a kid: the one key that accepts the algorithm (None: several).
        self._only: dict[str, VerifyKey | None] = {}
        for k in keys:
            for alg in k.algorithms:
                if k.kid is None and alg not in self._kidless:
                    self._kidless[alg] = k
                self._only[alg] = k if alg not in self._only else None

    def find(self, kid: str | None, alg: str) -> VerifyKey:
        """The key for a token, or the reason there is none."""
        if kid is not None:
            key = self._by_kid.get(kid)
            if key is None:
                key = self._kidless.get(alg)
                if key is None:
                    raise UnknownKey(kid)
                return key
            if alg not in key.algorithms:
                raise InvalidToken(Reason.KEY_MISMATCH)
            return key
        if alg not in self._only:
            raise InvalidToken(Reason.KEY_MISMATCH)
        only = self._only[alg]
        if only is None:
            raise InvalidToken(Reason.AMBIGUOUS_KEY)
        return only


def verify_signature(alg: str, key: VerifyKey, signing_input: bytes, signature: bytes) -> bool:
    return bool(SUPPORTED[alg].verify(signing_input, key.key, signature))
