"""The auth plugin's answers, prepared once: status, headers and body prefix per outcome.

Bodies follow the gateway's uniform JSON error shape; ``WWW-Authenticate`` follows
RFC 6750 (``error="invalid_token"`` / ``"insufficient_scope"``) with a fixed description
per reason, so nothing from the token is reflected to the client.
"""

from __future__ import annotations

from hotpath.context import Header
from hotpath.errors import JSON_CONTENT_TYPE, CannedError, ErrorCode
from hotpath.responses import LocalResponse
from plugins.auth.errors import DESCRIPTIONS, Reason

WWW_AUTHENTICATE = b"www-authenticate"
_NO_STORE = (b"cache-control", b"no-store")
UNAVAILABLE_RETRY_AFTER = 5


class Canned:
    """One prepared answer: the request id is the only per-request part."""

    __slots__ = ("_error", "headers", "status")

    def __init__(self, error: CannedError, extra: list[Header]) -> None:
        self._error = error
        self.status = error.status
        self.headers: list[Header] = [JSON_CONTENT_TYPE, _NO_STORE, *extra]

    def response(self, request_id: str) -> LocalResponse:
        # The gateway copies the header list before adding to it, so sharing it is safe.
        return LocalResponse(self.status, self.headers, self._error.body(request_id))


class AuthResponses:
    """Answers shared by every route of one realm."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.missing = Canned(
            CannedError(401, ErrorCode.UNAUTHORIZED, DESCRIPTIONS[Reason.MISSING]),
            [(WWW_AUTHENTICATE, f'Bearer realm="{realm}"'.encode())],
        )
        self.invalid: dict[Reason, Canned] = {
            reason: Canned(
                CannedError(401, ErrorCode.AUTH_FAILED, text),
                [(WWW_AUTHENTICATE,
                  f'Bearer realm="{realm}", error="invalid_token", error_description="{text}"'.encode())],
            )
            for reason, text in DESCRIPTIONS.items()
            if reason is not Reason.MISSING
        }
        self.unavailable = Canned(
            CannedError(503, ErrorCode.SERVICE_UNAVAILABLE, "identity provider keys are not loaded yet"),
            [(b"retry-after", str(UNAVAILABLE_RETRY_AFTER).encode())],
        )

    def forbidden(self, scopes: tuple[str, ...], message: str) -> Canned:
        """A route's 403, naming the scopes it needs (RFC 6750 section 3)."""
        challenge = f'Bearer realm="{self.realm}", error="insufficient_scope"'
        if scopes:
            challenge += f', scope="{" ".join(scopes)}"'
        error = CannedError(403, ErrorCode.FORBIDDEN, message)
        return Canned(error, [(WWW_AUTHENTICATE, challenge.encode())])
