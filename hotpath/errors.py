"""The gateway's own error responses, and the exceptions that produce them.

Every error the gateway itself answers has one JSON shape::

    {"error": {"code": ..., "message": ..., "retry_after"?: int, "details"?: {...}}, "request_id": ...}

Two ways to produce one, for two kinds of code:

- Plugins return a verdict: ``CannedError.response(...)`` builds the ``LocalResponse`` of a
  refusal (401, 403, 429, ...). A plugin never raises to refuse.
- The core (the dispatcher and the proxy) raises ``GatewayError`` from deep inside a request
  (a bad path, a body too large, an upstream timeout); the dispatcher turns it into the same
  JSON answer. ``ConfigError`` is *not* one of these: it stops startup
  (``controlplane.config.errors``).

Bodies are assembled from bytes prepared at import time; only the request id (and an
optional retry_after or details) is filled in per request.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

import orjson

from hotpath.audit import Refusal
from hotpath.context import Header
from hotpath.responses import LocalResponse


class ErrorCode(str, Enum):
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    CIRCUIT_BREAKER_OPEN = "CIRCUIT_BREAKER_OPEN"
    AUTH_FAILED = "AUTH_FAILED"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    PROXY_ERROR = "PROXY_ERROR"
    TIMEOUT = "TIMEOUT"


JSON_CONTENT_TYPE: Final = (b"content-type", b"application/json")
NO_STORE: Final = (b"cache-control", b"no-store")
RETRY_AFTER: Final = b"retry-after"


class GatewayError(Exception):
    """An error answered by the gateway itself, with a fixed status and code."""

    __slots__ = ("code", "details", "headers", "message", "retry_after", "status")

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details
        self.headers = headers

    def body(self, request_id: str) -> bytes:
        return error_body(self.code, self.message, request_id, self.retry_after, self.details)


def error_body(
    code: ErrorCode,
    message: str,
    request_id: str,
    retry_after: int | None = None,
    details: dict[str, Any] | None = None,
) -> bytes:
    error: dict[str, Any] = {"code": code.value, "message": message}
    if retry_after is not None:
        error["retry_after"] = retry_after
    if details:
        error["details"] = details
    return orjson.dumps({"error": error, "request_id": request_id})


class CannedError:
    """A prebuilt error whose body differs per request only in the request id (and, for a
    refusal that says when to come back, ``retry_after``).

    Used for the errors the hot path answers most (404, 401, 429, 503 breaker open), so
    that answering them costs a few bytes concatenations.
    """

    __slots__ = ("_headers", "_prefix", "_retry_prefix", "code", "message", "status")

    _ID_SUFFIX = b'"}'

    def __init__(self, status: int, code: ErrorCode, message: str, headers: list[Header] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        head = orjson.dumps({"error": {"code": code.value, "message": message}})
        # '{"error":{...}}' -> '{"error":{...},"request_id":"'
        self._prefix = head[:-1] + b',"request_id":"'
        # '{"error":{...}}' -> '{"error":{...,"retry_after":'
        self._retry_prefix = head[:-2] + b',"retry_after":'
        # The answer's own headers (content-type, cache-control, any the caller adds).
        self._headers: list[Header] = [JSON_CONTENT_TYPE, NO_STORE, *(headers or ())]

    def body(self, request_id: str) -> bytes:
        # Request ids are generated or validated to a safe charset, so no escaping is needed.
        return self._prefix + request_id.encode("ascii") + self._ID_SUFFIX

    def response(self, request_id: str, refusal: Refusal | None = None, retry_after: int = 0) -> LocalResponse:
        """This error as a plugin's answer; ``retry_after`` (seconds, when above 0) goes in
        the body and the ``Retry-After`` header."""
        if retry_after <= 0:
            return LocalResponse(self.status, self._headers, self.body(request_id), refusal)
        seconds = b"%d" % retry_after
        body = self._retry_prefix + seconds + b'},"request_id":"' + request_id.encode("ascii") + self._ID_SUFFIX
        return LocalResponse(self.status, [*self._headers, (RETRY_AFTER, seconds)], body, refusal)

    def exception(
        self,
        *,
        retry_after: int | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        message: str | None = None,
    ) -> GatewayError:
        return GatewayError(
            self.status,
            self.code,
            message or self.message,
            retry_after=retry_after,
            headers=headers,
        )


NOT_FOUND: Final = CannedError(404, ErrorCode.NOT_FOUND, "no route matches this path")
BAD_PATH: Final = CannedError(400, ErrorCode.BAD_REQUEST, "the request path cannot be normalized safely")
INTERNAL: Final = CannedError(500, ErrorCode.INTERNAL_ERROR, "internal gateway error")


def bad_request(message: str, details: dict[str, Any] | None = None) -> GatewayError:
    return GatewayError(400, ErrorCode.BAD_REQUEST, message, details=details)


def payload_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"request body exceeds the route limit of {limit} bytes",
        details={"limit_bytes": limit},
    )


def upstream_timeout(service: str) -> GatewayError:
    return GatewayError(504, ErrorCode.TIMEOUT, f"upstream service '{service}' timed out")


def upstream_unreachable(service: str) -> GatewayError:
    return GatewayError(502, ErrorCode.PROXY_ERROR, f"upstream service '{service}' refused or reset the connection")
