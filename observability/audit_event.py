"""Audit events: the security-relevant outcomes the gateway reports.

``AuditSink`` is what emitters call; it must never block or raise on the request path.
The delivering implementation (batched HTTP sink, JSON log) lives in
``observability.audit``.
"""

from __future__ import annotations

import hashlib
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from hotpath.context import RequestContext


class AuditType(StrEnum):
    AUTH_FAILURE = "auth_failure"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"
    ADMIN_ACTION = "admin_action"


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    time: float
    type: AuditType
    reason: str
    request_id: str | None = None
    correlation_id: str | None = None
    user: str | None = None  # hashed, never the raw subject
    route: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] | None = None


# Key of the user-id hash; observability.audit sets it from the configuration (a secret)
# at worker start, so audit events and access logs hash a user alike.
_user_hash_key = b"gatehouse"


def set_user_hash_key(key: str | bytes) -> None:
    global _user_hash_key
    _user_hash_key = (key.encode("utf-8") if isinstance(key, str) else key)[:64]


def hash_user(subject: str | None, salt: bytes | None = None) -> str | None:
    if subject is None:
        return None
    key = _user_hash_key if salt is None else salt[:64]
    return hashlib.blake2b(subject.encode("utf-8"), digest_size=12, key=key).hexdigest()


def event_for_request(
    kind: AuditType, ctx: RequestContext, reason: str, details: dict[str, Any] | None = None
) -> AuditEvent:
    return AuditEvent(
        time=time.time(),
        type=kind,
        reason=reason,
        request_id=ctx.request_id,
        correlation_id=ctx.correlation_id,
        user=hash_user(ctx.identity.subject) if ctx.identity is not None else None,
        route=ctx.route.name if ctx.route is not None else None,
        client_ip=ctx.client_ip,
        details=details,
    )


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None:
        """Queue the event; never blocks, never raises."""


class NullAuditSink:
    def emit(self, event: AuditEvent) -> None:
        return None
