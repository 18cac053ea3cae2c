"""Audit events: the security-relevant outcomes the gateway reports, and where they go.

``AuditSink`` is what emitters call; it must never block or raise on the request path.
The delivering implementation (batched HTTP sink, JSON log) lives in
``observability.audit``. Request events (refusals, every request of a sensitive route)
are emitted by the audit plugin (``plugins/audit``) from the ``Refusal`` a plugin's answer
carries; breakers and the admin API emit their own events.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

import msgspec


class AuditType(StrEnum):
    AUTH_FAILURE = "auth_failure"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    VALIDATION_FAILED = "validation_failed"
    REQUEST = "request"
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


class Refusal:
    """Why a plugin refused a request: the event type, a reason word, and details.

    Made once, when the plugin is built, and attached to the answer it returns; nothing is
    emitted unless the route's audit plugin asks for this type."""

    __slots__ = ("details", "kind", "reason")

    def __init__(self, kind: AuditType, reason: str, details: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.details = details


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


class AuditSink:
    """Where events go. This base drops them: the gateway without an audit sink."""

    def emit(self, event: AuditEvent) -> None:
        """Queue the event; never blocks, never raises."""
        return None


class NullAuditSink(AuditSink):
    pass
