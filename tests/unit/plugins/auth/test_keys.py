"""JWKS parsing: only signature keys of the provider's algorithms, strong enough, are kept."""

from __future__ import annotations

from typing import Any

import pytest
from jwt.algorithms import RSAAlgorithm

from plugins.auth.keys import MAX_JWKS_KEYS, UnusableKey, jwk_key, parse_jwks
from tests.support.jwks_server import SigningKey

ALL = frozenset({"RS256", "ES256", "ES384", "PS256"})


def test_keys_are_restricted_to_their_type_and_jwk_alg(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    rsa = jwk_key(rsa_key.jwk, ALL, 2048)
    assert rsa.algorithms == {"RS256"}  # the JWK says alg RS256, so not PS256
    no_alg = {k: v for k, v in rsa_key.jwk.items() if k != "alg"}
    assert jwk_key(no_alg, ALL, 2048).algorithms == {"RS256", "PS256"}
    assert jwk_key(ec_key.jwk, ALL, 2048).algorithms == {"ES256"}  # P-256 only ever ES256


@pytest.mark.parametrize(
    "change",
    [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"alg": "RS512"}, {"alg": "HS256"}, {"kid": 5}, {"kid": "x" * 300},
     {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "OKP"}, {"n": "not-base64!"}],
)
def test_unusable_jwks_entries_are_rejected(rsa_key: SigningKey, change: dict[str, Any]) -> None:
    with pytest.raises(UnusableKey):
        jwk_key({**rsa_key.jwk, **change}, ALL, 2048)


def test_weak_rsa_keys_are_rejected() -> None:
    weak = SigningKey("RSA", kid="weak", bits=1024)
    with pytest.raises(UnusableKey, match="min_rsa_bits"):
        jwk_key(weak.jwk, ALL, 2048)


def test_private_jwk_is_used_for_its_public_part(rsa_key: SigningKey) -> None:
    private = RSAAlgorithm.to_jwk(rsa_key.private, as_dict=True)
    private.pop("key_ops")  # pyjwt marks a private JWK "sign"; a leaked one need not be
    key = jwk_key({**private, "kid": "p"}, ALL, 2048)
    assert not hasattr(key.key, "private_numbers")


def test_parse_skips_bad_entries_and_keeps_good_ones(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    doc = {"keys": [rsa_key.jwk, {"kty": "oct", "k": "c2VjcmV0"}, "junk", ec_key.jwk]}
    assert [k.kid for k in parse_jwks(doc, ALL, 2048, "test")] == [rsa_key.kid, ec_key.kid]


@pytest.mark.parametrize("doc", [[], {"keys": {}}, {"nokeys": []}, "x", {"keys": [{}] * (MAX_JWKS_KEYS + 1)}])
def test_documents_that_are_not_key_sets_are_rejected(doc: Any) -> None:
    with pytest.raises(UnusableKey):
        parse_jwks(doc, ALL, 2048, "test")
