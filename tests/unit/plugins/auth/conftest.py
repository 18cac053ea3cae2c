"""Keys, a settable clock and token forging helpers for the auth unit tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from plugins.auth.config import ProviderConfig, PublicKey
from plugins.auth.provider import Provider
from tests.support.jwks_server import SigningKey

NOW = 1_700_000_000.0
SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"  # 35 bytes: enough for HS256


class FakeClock:
    """Time under test control (wall clock for exp/nbf, or monotonic for cooldowns)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def forge(header: dict[str, Any] | Any, claims: dict[str, Any] | Any, signature: bytes = b"sig") -> bytes:
    """A compact token with exactly the given header and payload and an arbitrary signature."""
    return b".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def public_pem(key: SigningKey) -> str:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "iss": "https://idp.test", "aud": "api", "exp": NOW + 300, "iat": NOW}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey("RSA", kid="rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey("EC", kid="ec-1")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return SigningKey("RSA", kid="attacker")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_provider(clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey, **overrides: Any) -> Provider:
    fields: dict[str, Any] = {
        "algorithms": ("RS256", "ES256"),
        "public_keys": (
            PublicKey(kid=rsa_key.kid, pem=public_pem(rsa_key)),
            PublicKey(kid=ec_key.kid, pem=public_pem(ec_key)),
        ),
        "issuer": "https://idp.test",
        "audience": ("api", "other"),
        "leeway": 10.0,
    }
    fields.update(overrides)
    return Provider("test", ProviderConfig(**fields), clock=clock, environ={})


@pytest.fixture
def provider(clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey) -> Provider:
    return make_provider(clock, rsa_key, ec_key)
