"""The auth plugin's answers, prepared once: status, headers and body prefix per outcome.

Bodies follow the gateway's uniform JSON error shape; ``WWW-Authenticate`` follows
RFC 6750 (``error="invalid_token"`` / ``"insufficient_scope"``) with a fixed description
per reason, so nothing from the token is reflected to the client.
"""

from __future__ import annotations

from hotpath.errors import CannedError, ErrorCode
from plugins.auth.api_keys import EXPIRED, MALFORMED, UNKNOWN
from plugins.auth.errors import DESCRIPTIONS, Reason

WWW_AUTHENTICATE = b"www-authenticate"
UNAVAILABLE_RETRY_AFTER = 5


class AuthResponses:
    """Answers shared by every route of one realm."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.missing = CannedError(
            401, ErrorCode.UNAUTHORIZED, DESCRIPTIONS[Reason.MISSING],
            [(WWW_AUTHENTICATE, f'Bearer realm="{realm}"'.encode())],
        )
        self.invalid: dict[Reason, CannedError] = {
            reason: CannedError(
                401, ErrorCode.AUTH_FAILED, text,
                [(WWW_AUTHENTICATE,
                  f'Bearer realm="{realm}", error="invalid_token", error_description="{text}"'.encode())],
            )
            for reason, text in DESCRIPTIONS.items()
            if reason is not Reason.MISSING
        }
        self.unavailable = CannedError(
            503, ErrorCode.SERVICE_UNAVAILABLE, "identity provider keys are not loaded yet",
            [(b"retry-after", str(UNAVAILABLE_RETRY_AFTER).encode())],
        )

    def forbidden(self, scopes: tuple[str, ...], message: str, scheme: str = "Bearer") -> CannedError:
        """A route's 403, naming the scopes it needs (RFC 6750 section 3)."""
        challenge = f'{scheme} realm="{self.realm}", error="insufficient_scope"'
        if scopes:
            challenge += f', scope="{" ".join(scopes)}"'
        return CannedError(403, ErrorCode.FORBIDDEN, message, [(WWW_AUTHENTICATE, challenge.encode())])


# What a client is told about a refused API key: fixed, and never derived from the key.
KEY_DESCRIPTIONS: dict[str, str] = {
    MALFORMED: "the API key is malformed",
    UNKNOWN: "the API key is not valid",
    EXPIRED: "the API key has expired",
}


class ApiKeyResponses:
    """Answers of the routes that take keys of one set. The challenge scheme ``ApiKey`` is
    not registered; it tells a client which header to send."""

    def __init__(self, realm: str, header: str, bearer_too: bool) -> None:
        challenge = f'ApiKey realm="{realm}", header="{header}"'
        if bearer_too:
            missing_text = f"a bearer token or an API key ({header}) is required"
            missing_challenge = f'Bearer realm="{realm}", {challenge}'
        else:
            missing_text = f"an API key is required in the {header} header"
            missing_challenge = challenge
        self.missing = CannedError(401, ErrorCode.UNAUTHORIZED, missing_text,
                                   [(WWW_AUTHENTICATE, missing_challenge.encode())])
        self.invalid: dict[str, CannedError] = {
            reason: CannedError(401, ErrorCode.AUTH_FAILED, text,
                                [(WWW_AUTHENTICATE, f'{challenge}, error="invalid_key"'.encode())])
            for reason, text in KEY_DESCRIPTIONS.items()
        }
        self.unavailable = CannedError(
            503, ErrorCode.SERVICE_UNAVAILABLE, "API keys cannot be checked right now",
            [(b"retry-after", str(UNAVAILABLE_RETRY_AFTER).encode())],
        )
