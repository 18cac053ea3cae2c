"""``routes[].plugins.audit`` (or ``default_plugins.audit``)."""

from __future__ import annotations

from typing import Final

from hotpath.audit import AuditType
from hotpath.structs import Strict

# The refusal types a route may record: each comes from one plugin's answers.
REFUSALS: Final = (
    AuditType.AUTH_FAILURE.value,
    AuditType.FORBIDDEN.value,
    AuditType.RATE_LIMITED.value,
    AuditType.VALIDATION_FAILED.value,
)


class AuditRouteConfig(Strict, frozen=True, kw_only=True):
    # The refusals to record, by type.
    events: tuple[str, ...] = REFUSALS
    # Record every request of this route, refused or not (a sensitive route).
    requests: bool = False
    # With requests: a SHA-256 of the request body as forwarded (never the body itself).
    body_digest: bool = False

    def __post_init__(self) -> None:
        for name in self.events:
            if name not in REFUSALS:
                raise ValueError(f"unknown refusal type '{name}' in events (known: {', '.join(REFUSALS)})")
        if self.body_digest and not self.requests:
            raise ValueError("body_digest needs requests: true (the digest belongs to a request event)")
