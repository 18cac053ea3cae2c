"""The audit plugin: refusals and sensitive requests become audit events after the response."""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar, Final

import msgspec

from hotpath.audit import AuditEvent, AuditSink, AuditType, Refusal, hash_user
from hotpath.context import BodyTap, RequestContext, StateKey
from hotpath.plugin import CONTINUE, Plugin, PluginSetup, Verdict
from plugins.audit.config import AuditRouteConfig


class BodyDigest(BodyTap):
    """SHA-256 of a request body as the proxy forwards it; set only if it arrived whole."""

    __slots__ = ("_hash", "hexdigest")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.hexdigest: str | None = None

    def feed(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def finish(self, complete: bool) -> None:
        if complete:
            self.hexdigest = self._hash.hexdigest()


DIGEST: Final = StateKey[BodyDigest]("audit.digest")


def event_for(kind: AuditType, ctx: RequestContext, reason: str, details: dict[str, Any] | None) -> AuditEvent:
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


class AuditPlugin(Plugin[AuditRouteConfig]):
    name: ClassVar[str] = "audit"
    # First in the request phase: its body tap is in place whoever forwards the body.
    priority: ClassVar[int] = 3000
    config_type: ClassVar[type[msgspec.Struct]] = AuditRouteConfig

    def __init__(self, config: AuditRouteConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        self._sink: AuditSink = setup.runtime.audit
        self._events = frozenset(AuditType(e) for e in config.events)
        self._requests = config.requests
        self._digest = config.body_digest

    def uses(self, hook: str) -> bool:
        if hook == "on_request":
            return self._digest  # only to tap the body
        return super().uses(hook)

    async def on_request(self, ctx: RequestContext) -> Verdict:
        tap = BodyDigest()
        ctx.put(DIGEST, tap)
        ctx.tap_body(tap)
        return CONTINUE

    def on_log(self, ctx: RequestContext) -> None:
        refusal: Refusal | None = ctx.refusal
        if refusal is not None and refusal.kind in self._events:
            self._sink.emit(event_for(refusal.kind, ctx, refusal.reason, refusal.details))
        if self._requests:
            details: dict[str, Any] = {"method": ctx.method, "path": ctx.path, "status": ctx.status,
                                       "bytes_in": ctx.bytes_in}
            if refusal is not None:
                details["refused"] = refusal.reason
            digest = ctx.get(DIGEST)
            if digest is not None and digest.hexdigest is not None:
                details["body_sha256"] = digest.hexdigest
            self._sink.emit(event_for(AuditType.REQUEST, ctx, "request", details))
