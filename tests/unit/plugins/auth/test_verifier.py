"""TokenVerifier: every hostile-token case, the claim checks with leeway, and the cache."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from plugins.auth.config import ProviderConfig, PublicKey
from plugins.auth.errors import InvalidToken, KeysUnavailable, Reason, UnknownKey
from plugins.auth.keys import KeyRing
from plugins.auth.provider import Provider
from plugins.auth.verifier import TokenVerifier
from tests.support.jwks_server import SigningKey
from tests.unit.plugins.auth.conftest import NOW, SECRET, FakeClock, b64, claims, forge, make_provider, public_pem


def reason_of(provider: Provider, token: bytes | str) -> Reason:
    raw = token.encode() if isinstance(token, str) else token
    with pytest.raises(InvalidToken) as info:
        provider.verifier.verify(raw)
    return info.value.reason


def ok(provider: Provider, token: str | bytes) -> Any:
    return provider.verifier.verify(token.encode() if isinstance(token, str) else token)


# -- valid tokens -------------------------------------------------------------------------


def test_rs256_token_yields_identity_and_headers(provider: Provider, rsa_key: SigningKey) -> None:
    token = rsa_key.sign(claims(roles=["admin", "ops"], scope="read:orders write:orders", tier="pro"))
    v = ok(provider, token)
    assert v.identity.subject == "alice"
    assert v.identity.tier == "pro"
    assert v.identity.roles == {"admin", "ops"}
    assert v.identity.scopes == {"read:orders", "write:orders"}
    assert dict(v.headers) == {
        b"x-user-id": b"alice",
        b"x-user-tier": b"pro",
        b"x-user-roles": b"admin,ops",
        b"x-user-scopes": b"read:orders write:orders",
    }


def test_es256_token_is_accepted(provider: Provider, ec_key: SigningKey) -> None:
    assert ok(provider, ec_key.sign(claims())).identity.subject == "alice"


def test_hs256_with_shared_secret(clock: FakeClock) -> None:
    p = Provider("hs", ProviderConfig(algorithms=("HS256",), secret=SECRET), clock=clock, environ={})
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert ok(p, token).identity.subject == "alice"
    assert reason_of(p, jwt.encode(claims(), SECRET + "x", algorithm="HS256")) is Reason.BAD_SIGNATURE


def test_hs256_secret_from_environment_variable(clock: FakeClock) -> None:
    p = Provider("hs", ProviderConfig(algorithms=("HS256",), secret_env="MY_SECRET"), clock=clock,
                 environ={"MY_SECRET": SECRET})
    assert ok(p, jwt.encode(claims(), SECRET, algorithm="HS256")).identity.subject == "alice"


def test_missing_tier_claim_gives_default_tier(provider: Provider, rsa_key: SigningKey) -> None:
    assert ok(provider, rsa_key.sign(claims())).identity.tier == "free"


# -- hostile tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "", None, 123, ["RS256"], {"a": 1}])
@pytest.mark.parametrize("signature", [b"", b"garbage"])
def test_alg_none_in_any_form_is_refused(provider: Provider, alg: Any, signature: bytes) -> None:
    assert reason_of(provider, forge({"alg": alg, "typ": "JWT"}, claims(), signature)) is Reason.ALG_NOT_ALLOWED


def test_alg_none_is_refused_without_kid_too(provider: Provider) -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert reason_of(provider, token) is Reason.ALG_NOT_ALLOWED


def _hs256_with_public_key(key: SigningKey, kid: str | None) -> bytes:
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    unsigned = forge(header, claims()).rsplit(b".", 1)[0]
    mac = hmac.new(public_pem(key).encode(), unsigned, hashlib.sha256).digest()
    return unsigned + b"." + b64(mac)


def test_hs256_signed_with_the_rsa_public_key_is_refused(provider: Provider, rsa_key: SigningKey) -> None:
    assert reason_of(provider, _hs256_with_public_key(rsa_key, rsa_key.kid)) is Reason.ALG_NOT_ALLOWED


def test_key_confusion_fails_even_when_the_provider_allows_hs256(clock: FakeClock, rsa_key: SigningKey) -> None:
    p = Provider(
        "mixed",
        ProviderConfig(algorithms=("RS256", "HS256"), secret=SECRET,
                       public_keys=(PublicKey(kid=rsa_key.kid, pem=public_pem(rsa_key)),)),
        clock=clock, environ={},
    )
    # The kid names the RSA key: an RSA key never checks an HMAC.
    assert reason_of(p, _hs256_with_public_key(rsa_key, rsa_key.kid)) is Reason.KEY_MISMATCH
    # Without a kid the only HS256 key is the real secret, so the MAC does not match.
    assert reason_of(p, _hs256_with_public_key(rsa_key, None)) is Reason.BAD_SIGNATURE
    assert ok(p, rsa_key.sign(claims())).identity.subject == "alice"


def test_crit_header_is_refused(provider: Provider, rsa_key: SigningKey) -> None:
    token = rsa_key.sign(claims(), headers={"crit": ["exp"], "exp": 1})
    assert reason_of(provider, token) is Reason.CRIT


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c"])
def test_attacker_key_embedded_or_referenced_in_header_is_refused(
    provider: Provider, attacker_key: SigningKey, param: str
) -> None:
    values = {
        "jwk": attacker_key.jwk,
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    token = attacker_key.sign(claims(), headers={param: values[param]})
    assert reason_of(provider, token) is Reason.EMBEDDED_KEY


def test_attacker_key_under_a_known_kid_fails_the_signature(
    provider: Provider, attacker_key: SigningKey, rsa_key: SigningKey
) -> None:
    assert reason_of(provider, attacker_key.sign(claims(), kid=rsa_key.kid)) is Reason.BAD_SIGNATURE


def test_tampered_payload_fails_the_signature(provider: Provider, rsa_key: SigningKey) -> None:
    header, _, sig = rsa_key.sign(claims()).encode().split(b".")
    evil = b64(b'{"sub":"admin","iss":"https://idp.test","aud":"api","exp":9999999999}')
    assert reason_of(provider, b".".join([header, evil, sig])) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"abc",
        b"a.b",
        b"a.b.c.d",
        b"a.b.c.d.e",  # JWE compact form
        b"..",
        b"!!!.???.***",
        b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig\x00",
        b"bm90IGpzb24.eyJzdWIiOiJ4In0.c2ln",  # header is not JSON
        b"WzEsMl0.eyJzdWIiOiJ4In0.c2ln",  # header is a JSON array
        b"e.eyJzdWIiOiJ4In0.c2ln",  # impossible base64 length
        b"eyJhbGciOiJSUzI1NiJ9 .eyJzdWIiOiJ4In0.c2ln",
        b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln=",  # padding is not allowed
    ],
)
def test_malformed_segments_are_refused(provider: Provider, token: bytes) -> None:
    assert reason_of(provider, token) is Reason.MALFORMED


def test_payload_that_is_not_an_object_is_refused(provider: Provider, rsa_key: SigningKey) -> None:
    token = jwt.api_jws.encode(b"[1,2,3]", rsa_key.private, algorithm="RS256", headers={"kid": rsa_key.kid})
    assert reason_of(provider, token) is Reason.MALFORMED


def test_oversized_token_is_refused_before_parsing(provider: Provider, rsa_key: SigningKey) -> None:
    big = rsa_key.sign(claims(padding="x" * 9000))
    assert reason_of(provider, big) is Reason.OVERSIZED
    # Garbage that would be MALFORMED is OVERSIZED: the size bound comes first.
    assert reason_of(provider, b"!" * 8193) is Reason.OVERSIZED


@pytest.mark.parametrize("kid", [123, {"a": 1}, ["rsa-1"], "x" * 300, "has space", "new\nline", "", "' OR 1=1"])
def test_invalid_kid_values_are_refused(provider: Provider, rsa_key: SigningKey, kid: Any) -> None:
    header = {"alg": "RS256", "kid": kid}
    assert reason_of(provider, forge(header, claims())) is Reason.BAD_KID


@pytest.mark.parametrize("kid", ["../../../../dev/null", "'OR'1'='1", "rsa-1;DROP", "$(id)", "%00"])
def test_kid_injection_only_ever_misses_the_key_lookup(provider: Provider, rsa_key: SigningKey, kid: str) -> None:
    with pytest.raises(UnknownKey):
        provider.verifier.verify(rsa_key.sign(claims(), kid=kid).encode())


def test_token_for_unconfigured_algorithm_is_refused(provider: Provider) -> None:
    hs = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    assert reason_of(provider, hs) is Reason.ALG_NOT_ALLOWED


def test_kidless_token_with_several_candidate_keys_must_name_its_key(
    clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    other = SigningKey("RSA", kid="rsa-2")
    p = make_provider(clock, rsa_key, ec_key, public_keys=(
        PublicKey(kid=rsa_key.kid, pem=public_pem(rsa_key)), PublicKey(kid=other.kid, pem=public_pem(other))))
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    assert reason_of(p, token) is Reason.AMBIGUOUS_KEY


# -- claims -------------------------------------------------------------------------------


def test_exp_is_checked_with_leeway(provider: Provider, rsa_key: SigningKey, clock: FakeClock) -> None:
    assert ok(provider, rsa_key.sign(claims(exp=NOW - 5)))  # 5 s late, within the 10 s leeway
    assert reason_of(provider, rsa_key.sign(claims(exp=NOW - 10))) is Reason.EXPIRED


def test_nbf_is_checked_with_leeway(provider: Provider, rsa_key: SigningKey) -> None:
    assert ok(provider, rsa_key.sign(claims(nbf=NOW + 5)))
    assert reason_of(provider, rsa_key.sign(claims(nbf=NOW + 11))) is Reason.NOT_YET_VALID


@pytest.mark.parametrize("iss", ["https://evil.test", None, 5, ["https://idp.test"]])
def test_issuer_must_match(provider: Provider, rsa_key: SigningKey, iss: Any) -> None:
    c = claims()
    c.pop("iss")
    if iss is not None:
        c["iss"] = iss
    raw = jwt.api_jws.encode(json.dumps(c).encode(), rsa_key.private, algorithm="RS256", headers={"kid": rsa_key.kid})
    assert reason_of(provider, raw) is Reason.BAD_ISSUER


@pytest.mark.parametrize("aud", ["api", ["x", "other"]])
def test_audience_accepts_any_configured_value(provider: Provider, rsa_key: SigningKey, aud: Any) -> None:
    assert ok(provider, rsa_key.sign(claims(aud=aud)))


@pytest.mark.parametrize("aud", ["evil", ["evil", "worse"], [], 7])
def test_audience_mismatch_is_refused(provider: Provider, rsa_key: SigningKey, aud: Any) -> None:
    assert reason_of(provider, rsa_key.sign(claims(aud=aud))) is Reason.BAD_AUDIENCE


def test_missing_audience_is_refused(provider: Provider, rsa_key: SigningKey) -> None:
    c = claims()
    c.pop("aud")
    assert reason_of(provider, rsa_key.sign(c)) is Reason.BAD_AUDIENCE


def test_exp_is_required_by_default(provider: Provider, rsa_key: SigningKey) -> None:
    c = claims()
    c.pop("exp")
    assert reason_of(provider, rsa_key.sign(c)) is Reason.MISSING_CLAIM


def test_configured_required_claims_are_enforced(clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey) -> None:
    p = make_provider(clock, rsa_key, ec_key, required_claims=("exp", "tenant.id"))
    assert reason_of(p, rsa_key.sign(claims())) is Reason.MISSING_CLAIM
    assert ok(p, rsa_key.sign(claims(tenant={"id": "t1"})))


def test_subject_is_required(provider: Provider, rsa_key: SigningKey) -> None:
    c = claims()
    c.pop("sub")
    assert reason_of(provider, rsa_key.sign(c)) is Reason.MISSING_CLAIM


@pytest.mark.parametrize(
    "extra",
    [{"exp": "tomorrow"}, {"exp": True}, {"nbf": "x"}, {"iat": "x"}, {"sub": 42}, {"sub": "bob\r\nx-user-id: root"},
     {"sub": ""}, {"tier": "gold plated"}, {"tier": 3}, {"roles": 5}, {"roles": ["r"] * 300}],
)
def test_claims_of_the_wrong_type_or_form_are_refused(provider: Provider, rsa_key: SigningKey, extra: Any) -> None:
    assert reason_of(provider, rsa_key.sign(claims(**extra))) is Reason.BAD_CLAIM


def test_claim_mapping_with_nested_paths_and_string_lists(
    clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    p = make_provider(clock, rsa_key, ec_key, roles_claim="realm_access.roles", scopes_claim="scp",
                      tier_claim="plan", subject_claim="uid", default_tier="basic")
    c = claims(uid="u-1", realm_access={"roles": ["admin", "bad role", "x,y"]}, scp=["read", "write"])
    v = ok(p, rsa_key.sign(c))
    assert v.identity.subject == "u-1"
    assert v.identity.tier == "basic"
    # Names that cannot travel in a header are dropped: fewer permissions, never more.
    assert v.identity.roles == {"admin"}
    assert v.identity.scopes == {"read", "write"}


def test_roles_as_a_separated_string(provider: Provider, rsa_key: SigningKey) -> None:
    assert ok(provider, rsa_key.sign(claims(roles="a, b c"))).identity.roles == {"a", "b", "c"}


# -- cache --------------------------------------------------------------------------------


def test_cache_hit_returns_the_prepared_result(provider: Provider, rsa_key: SigningKey) -> None:
    token = rsa_key.sign(claims()).encode()
    first = provider.verifier.verify(token)
    assert provider.verifier.verify(token) is first
    assert provider.verifier.cached == 1


def test_cache_hit_rechecks_exp(provider: Provider, rsa_key: SigningKey, clock: FakeClock) -> None:
    token = rsa_key.sign(claims(exp=NOW + 60)).encode()
    assert provider.verifier.verify(token)
    clock.now = NOW + 69  # inside exp + leeway
    assert provider.verifier.verify(token)
    clock.now = NOW + 70
    with pytest.raises(InvalidToken) as info:
        provider.verifier.verify(token)
    assert info.value.reason is Reason.EXPIRED
    assert provider.verifier.cached == 0


def test_cache_is_bounded(clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey) -> None:
    p = make_provider(clock, rsa_key, ec_key, cache_size=3)
    tokens = [rsa_key.sign(claims(sub=f"user-{i}")).encode() for i in range(10)]
    results = [p.verifier.verify(t) for t in tokens]
    assert p.verifier.cached == 3
    assert p.verifier.verify(tokens[-1]) is results[-1]  # newest kept
    assert p.verifier.verify(tokens[0]) is not results[0]  # oldest evicted, verified afresh


def test_cache_can_be_disabled(clock: FakeClock, rsa_key: SigningKey, ec_key: SigningKey) -> None:
    p = make_provider(clock, rsa_key, ec_key, cache_size=0)
    token = rsa_key.sign(claims()).encode()
    assert p.verifier.verify(token) is not p.verifier.verify(token)
    assert p.verifier.cached == 0


def test_removing_a_key_drops_cached_tokens(clock: FakeClock) -> None:
    key = SigningKey("EC", kid="k1")
    cfg = ProviderConfig(algorithms=("ES256",), jwks_url="http://127.0.0.1:1/jwks", issuer="https://idp.test",
                         audience="api")
    from plugins.auth.keys import jwk_key

    allowed = frozenset(cfg.algorithms)
    verifier = TokenVerifier(cfg, KeyRing([jwk_key(key.jwk, allowed, 2048)]), clock)
    token = key.sign(claims()).encode()
    verifier.verify(token)
    other = SigningKey("EC", kid="k2")
    verifier.set_ring(KeyRing([jwk_key(key.jwk, allowed, 2048), jwk_key(other.jwk, allowed, 2048)]))
    assert verifier.cached == 1  # adding a key keeps the cache
    verifier.set_ring(KeyRing([jwk_key(other.jwk, allowed, 2048)]))
    assert verifier.cached == 0
    with pytest.raises(UnknownKey):
        verifier.verify(token)


def test_no_keys_loaded_yet_is_not_an_invalid_token(clock: FakeClock, rsa_key: SigningKey) -> None:
    cfg = ProviderConfig(algorithms=("RS256",), jwks_url="http://127.0.0.1:1/jwks")
    p = Provider("pending", cfg, clock=clock, environ={})
    with pytest.raises(KeysUnavailable):
        p.verifier.verify(rsa_key.sign(claims()).encode())
    # ...but a structurally hostile token is refused without waiting for keys.
    assert reason_of(p, forge({"alg": "none"}, claims(), b"")) is Reason.ALG_NOT_ALLOWED


def test_jwk_helper_roundtrip(rsa_key: SigningKey) -> None:
    assert RSAAlgorithm.from_jwk(rsa_key.jwk) is not None
