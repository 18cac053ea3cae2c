"""Why a token was refused, and the exceptions that carry it.

Hierarchy (all raised by the verifier, caught by the plugin; none reaches the dispatcher):

- ``AuthError``: base class.
  - ``InvalidToken``: the token is refused for good; ``reason`` says why. Answered 401
    ``AUTH_FAILED``.
  - ``UnknownKey``: the token names a ``kid`` no loaded key has. The provider may refresh
    its JWKS once (subject to the cooldown) and retry; otherwise it becomes
    ``InvalidToken(UNKNOWN_KID)``.
  - ``KeysUnavailable``: the provider has never loaded a key (its JWKS endpoint has not
    answered yet). Answered 503, because the caller's token may well be fine.

Reasons are fixed words: they label audit events and logs and never echo the token.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MISSING = "missing_token"
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    CRIT = "crit_header"
    EMBEDDED_KEY = "embedded_key"
    BAD_KID = "bad_kid"
    UNKNOWN_KID = "unknown_kid"
    KEY_MISMATCH = "key_alg_mismatch"
    AMBIGUOUS_KEY = "kid_required"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_ISSUER = "bad_issuer"
    BAD_AUDIENCE = "bad_audience"
    MISSING_CLAIM = "missing_claim"
    BAD_CLAIM = "bad_claim"


# What the client is told (RFC 6750 error_description and the JSON message): short, fixed,
# and never derived from the token, so nothing an attacker sends is reflected back.
DESCRIPTIONS: dict[Reason, str] = {
    Reason.MISSING: "a bearer token is required",
    Reason.OVERSIZED: "the token is too large",
    Reason.MALFORMED: "the token is malformed",
    Reason.ALG_NOT_ALLOWED: "the token's algorithm is not accepted",
    Reason.CRIT: "the token has critical header extensions that are not supported",
    Reason.EMBEDDED_KEY: "tokens that name their own key (jwk, jku, x5u, x5c) are not accepted",
    Reason.BAD_KID: "the token's key id is invalid",
    Reason.UNKNOWN_KID: "the token is signed with an unknown key",
    Reason.KEY_MISMATCH: "the token's algorithm does not match its key",
    Reason.AMBIGUOUS_KEY: "the token must name its key (kid)",
    Reason.BAD_SIGNATURE: "the token's signature is invalid",
    Reason.EXPIRED: "the token has expired",
    Reason.NOT_YET_VALID: "the token is not valid yet",
    Reason.BAD_ISSUER: "the token's issuer is not accepted",
    Reason.BAD_AUDIENCE: "the token's audience is not accepted",
    Reason.MISSING_CLAIM: "the token lacks a required claim",
    Reason.BAD_CLAIM: "the token has a claim of the wrong type or form",
}


class AuthError(Exception):
    """Base of every auth exception."""


class InvalidToken(AuthError):
    __slots__ = ("reason",)

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class UnknownKey(AuthError):
    __slots__ = ("kid",)

    def __init__(self, kid: str) -> None:
        super().__init__("unknown kid")
        self.kid = kid


class KeysUnavailable(AuthError):
    """No key has been loaded yet."""
