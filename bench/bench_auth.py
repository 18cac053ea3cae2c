"""JWT verification (plugins/auth/verifier.py): the verified-token cache hit, and full
verification (cache off) for each supported algorithm family."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bench.support.fixture_types import Benchmark
from plugins.auth.config import ProviderConfig, PublicKey
from plugins.auth.keys import KeyRing
from plugins.auth.provider import static_keys
from plugins.auth.verifier import TokenVerifier

pytestmark = pytest.mark.benchmark(group="auth")

ISSUER = "https://idp.bench.invalid/"
AUDIENCE = "orders-api"
SECRET = "bench-secret-of-at-least-thirty-two-bytes!"


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"sub": "user-42", "tier": "pro", "roles": ["buyer"], "scope": "orders:read orders:write",
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}


def _public_pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _verifier_and_token(alg: str, cache_size: int) -> tuple[TokenVerifier, bytes]:
    common = {"issuer": ISSUER, "audience": AUDIENCE, "cache_size": cache_size}
    if alg == "HS256":
        config = ProviderConfig(algorithms=("HS256",), secret=SECRET, **common)  # type: ignore[arg-type]
        token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    else:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        key = PublicKey(kid="k1", pem=_public_pem(private))
        config = ProviderConfig(algorithms=(alg,), public_keys=(key,), **common)  # type: ignore[arg-type]
        token = jwt.encode(_claims(), private, algorithm=alg, headers={"kid": "k1"})
    verifier = TokenVerifier(config, KeyRing(static_keys(config, environ={})))
    return verifier, token.encode()


def bench_verify_cache_hit(benchmark: Benchmark) -> None:
    verifier, token = _verifier_and_token("HS256", cache_size=4096)
    verifier.verify(token)
    result = benchmark(verifier.verify, token)
    assert result.identity.subject == "user-42" and result.identity.tier == "pro"
    assert verifier.cached == 1


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def bench_verify_cache_miss(benchmark: Benchmark, alg: str) -> None:
    verifier, token = _verifier_and_token(alg, cache_size=0)
    result = benchmark(verifier.verify, token)
    assert result.identity.subject == "user-42"
    assert verifier.cached == 0  # every round verified the signature and claims
