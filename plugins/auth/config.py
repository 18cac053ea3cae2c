"""Typed configuration of the auth plugin: global providers and per-route policy.

Global (``plugins.auth``)::

    plugins:
      auth:
        realm: api
        providers:
          corp:
            algorithms: [RS256]
            jwks_url: https://idp.example/.well-known/jwks.json
            issuer: https://idp.example/
            audience: [orders-api]

Per route (``routes[].plugins.auth``): ``mode``, ``provider``, ``scopes``, ``roles``,
``roles_match``. docs/auth.md is the reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from hotpath.structs import Seconds, Strict
from plugins.auth.api_key_config import NAME_PATTERN as API_KEY_NAME_PATTERN
from plugins.auth.api_key_config import KeySetConfig, KeySetName

Algorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
]
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
HMAC_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

# Claim names may be dotted paths into nested objects ("realm_access.roles").
ClaimPath = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]
# Roles and scopes, of a token or an API key, travel in headers (api_key_config).
NAME_PATTERN = API_KEY_NAME_PATTERN
PolicyName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
TIER_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")




class PublicKey(Strict, frozen=True, kw_only=True):
    """A verification key given in the configuration rather than fetched from a JWKS."""

    kid: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    # PEM text (``${VAR}`` interpolation works) or a file holding it; exactly one.
    pem: str | None = None
    pem_file: str | None = None

    def __post_init__(self) -> None:
        if (self.pem is None) == (self.pem_file is None):
            raise ValueError("give exactly one of 'pem' and 'pem_file'")


class ProviderConfig(Strict, frozen=True, kw_only=True):
    # Accepted algorithms. The token's own "alg" only selects among these; "none" can never
    # be listed.
    algorithms: Annotated[tuple[Algorithm, ...], msgspec.Meta(min_length=1)] = ("RS256",)
    jwks_url: str | None = None
    # Seconds between background JWKS refreshes.
    jwks_refresh_interval: Seconds = 300.0
    # Minimum seconds between fetches caused by tokens naming an unknown kid, so a flood
    # of random kids costs the identity provider at most one fetch per cooldown (per worker).
    jwks_unknown_kid_cooldown: Seconds = 30.0
    jwks_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 3.0
    jwks_max_bytes: Annotated[int, msgspec.Meta(ge=256, le=16 * 1024 * 1024)] = 512 * 1024
    # Shared HMAC secret for HS* algorithms: ``secret`` (use ``${VAR}``), else the
    # environment variable named by ``secret_env``.
    secret: str | None = None
    secret_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "JWT_SECRET"
    public_keys: tuple[PublicKey, ...] = ()
    # RSA keys shorter than this are ignored (configured keys are a config error).
    min_rsa_bits: Annotated[int, msgspec.Meta(ge=1024, le=16_384)] = 2048
    # Accepted "iss" values; empty accepts any issuer.
    issuer: str | tuple[str, ...] = ()
    # Accepted "aud" values (the token needs one of them); empty skips the audience check.
    audience: str | tuple[str, ...] = ()
    # Clock skew tolerated on exp and nbf, in seconds.
    leeway: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    # Claims every token must carry (besides the subject claim).
    required_claims: tuple[ClaimPath, ...] = ("exp",)
    subject_claim: ClaimPath = "sub"
    tier_claim: ClaimPath = "tier"
    # Tier of an authenticated caller whose token has no tier claim.
    default_tier: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")] = "free"
    # A list of strings, or one string separated by spaces or commas.
    roles_claim: ClaimPath = "roles"
    # OAuth2 "scope" (space-separated string); a list ("scp") works too.
    scopes_claim: ClaimPath = "scope"
    # Verified tokens kept per worker; a hit re-checks exp. 0 disables the cache.
    cache_size: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 4096
    # Tokens longer than this are refused before any parsing.
    max_token_bytes: Annotated[int, msgspec.Meta(ge=128, le=65_536)] = 8192

    def __post_init__(self) -> None:
        if self.jwks_url is not None and not re.match(r"^https?://[^/\s]+", self.jwks_url):
            raise ValueError("jwks_url must be an http(s) URL")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError("algorithms lists a value twice")
        asymmetric = [a for a in self.algorithms if a not in HMAC_ALGORITHMS]
        if asymmetric and self.jwks_url is None and not self.public_keys:
            raise ValueError(f"{', '.join(asymmetric)} needs keys: set jwks_url or public_keys")
        if self.public_keys and not asymmetric:
            raise ValueError("public_keys are given but no RS/PS/ES algorithm is allowed")

    @property
    def issuers(self) -> tuple[str, ...]:
        return (self.issuer,) if isinstance(self.issuer, str) else self.issuer

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else self.audience


class AuthSettings(Strict, frozen=True, kw_only=True):
    providers: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")], ProviderConfig] = {}
    # Provider used by routes that name none; defaults to the only provider when there is one.
    default_provider: str | None = None
    # The realm in WWW-Authenticate challenges.
    realm: Annotated[str, msgspec.Meta(pattern=r'^[^"\\\x00-\x1f\x7f]{1,64}$')] = "gatehouse"
    # Header carrying "Bearer <token>".
    header: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9\-]{1,64}$")] = "authorization"
    # API keys and service tokens, by set (docs/api-keys.md).
    key_sets: dict[KeySetName, KeySetConfig] = {}
    # Key set of routes that accept API keys and name none; defaults to the only set.
    default_key_set: str | None = None

    def __post_init__(self) -> None:
        if self.default_provider is not None and self.default_provider not in self.providers:
            raise ValueError(f"default_provider '{self.default_provider}' is not one of the providers")
        if self.default_key_set is not None and self.default_key_set not in self.key_sets:
            raise ValueError(f"default_key_set '{self.default_key_set}' is not one of the key_sets")
        for name, key_set in self.key_sets.items():
            if key_set.header == self.header.lower():
                raise ValueError(f"key_sets.{name}.header: '{key_set.header}' carries bearer tokens here")


class AuthRouteConfig(Strict, frozen=True, kw_only=True):
    # public: no check; optional: a valid token sets the identity, none is anonymous, an
    # invalid one is refused; required: a valid token is needed.
    mode: Literal["required", "optional", "public"] = "required"
    # What a caller may prove itself with: a bearer JWT, an API key, or either.
    credentials: Annotated[tuple[Literal["bearer", "api_key"], ...], msgspec.Meta(min_length=1)] = ("bearer",)
    provider: str | None = None
    # The key set of API keys here (plugins.auth.key_sets); default: default_key_set.
    key_set: str | None = None
    # Every listed scope is required.
    scopes: tuple[PolicyName, ...] = ()
    # The caller needs any one (roles_match: any) or all (all) of these roles.
    roles: tuple[PolicyName, ...] = ()
    roles_match: Literal["any", "all"] = "any"

    def __post_init__(self) -> None:
        if self.mode != "required" and (self.scopes or self.roles):
            raise ValueError("scopes and roles need mode: required")
        if len(set(self.credentials)) != len(self.credentials):
            raise ValueError("credentials lists a value twice")
        if self.key_set is not None and "api_key" not in self.credentials:
            raise ValueError("key_set needs api_key in credentials")
        if self.provider is not None and "bearer" not in self.credentials:
            raise ValueError("provider needs bearer in credentials")
