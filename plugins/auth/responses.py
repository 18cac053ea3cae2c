"""The auth plugin's answers, prepared once: status, headers and body prefix per outcome.

Bodies follow the gateway's uniform JSON error shape; ``WWW-Authenticate`` follows
RFC 6750 (``error="invalid_token"`` / ``"insufficient_scope"``) with a fixed description
per reason, so nothing from the token is reflected to the client.
"""

from __future__ import annotations

from hotpath.errors import CannedError, ErrorCode
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

    def forbidden(self, scopes: tuple[str, ...], message: str) -> CannedError:
        """A route's 403, naming the scopes it needs (RFC 6750 section 3)."""
        challenge = f'Bearer realm="{self.realm}", error="insufficient_scope"'
        if scopes:
            challenge += f', scope="{" ".join(scopes)}"'
        return CannedError(403, ErrorCode.FORBIDDEN, message, [(WWW_AUTHENTICATE, challenge.encode())])
