"""The ``signed_url`` plugin: verify signed URLs, or issue them.

``mode: verify`` (default): a request passes only with a valid signature for its method,
normalized path and query (and, if bound, the client's address or subject) that has not
expired; anything else is 403 "invalid or expired", the reason kept for metrics and audit
events only. The signature parameters are removed before forwarding.

``mode: issue``: the route answers itself, to an authenticated caller, with
``{"url", "expires_at", "method"}``: its ``target`` (a path template, as a route's) with
the route template's path parameters filled in, signed with the current key. No upstream
is called.
"""

from __future__ import annotations

from typing import ClassVar, Final
from urllib.parse import unquote

import msgspec
import orjson

from hotpath.audit import AuditType, Refusal
from hotpath.context import Header, RequestContext
from hotpath.deferred import deferred
from hotpath.errors import CannedError, ErrorCode
from hotpath.paths import UnsafePath, normalize
from hotpath.plugin import CONTINUE, Plugin, PluginSetup, Verdict
from hotpath.responses import LocalResponse
from hotpath.runtime import WorkerRuntime
from hotpath.templates import Template, TemplateError, is_template
from plugins.signed_url.config import SignedUrlConfig, SignedUrlSettings
from plugins.signed_url.metrics import CHECKS, ISSUED
from plugins.signed_url.signer import (
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    MISSING,
    TOO_FAR,
    UNBOUND,
    UNKNOWN_KEY,
    Refused,
    UrlSigner,
    bind_ip,
    bind_subject,
)

OUTCOME: Final = "signed_url"
INVALID: Final = CannedError(403, ErrorCode.FORBIDDEN, "the URL signature is invalid or expired")
ANONYMOUS: Final = CannedError(401, ErrorCode.UNAUTHORIZED, "signed links are issued to authenticated callers only")
UNSIGNABLE: Final = CannedError(400, ErrorCode.BAD_REQUEST, "no signed link can be made for this path")
ANSWER_HEADERS: Final[list[Header]] = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
REASONS: Final = (MISSING, MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, EXPIRED, TOO_FAR, UNBOUND)
SIGNER_KEY: Final = "signed_url.signer"


def signer_of(settings: SignedUrlSettings) -> UrlSigner:
    keys = {k.id: k.secret.encode("utf-8") for k in settings.keys}
    return UrlSigner(keys, settings.signing_key, leeway=settings.leeway, max_ttl=settings.max_ttl)


def one_segment(value: str) -> bool:
    """Whether a parameter value fills one path segment and stays there: not empty, not a
    dot segment, no slash (escaped or not). Otherwise a caller could move the signed path
    out of where the target puts it (``..`` climbing out of ``/files/jobs/``)."""
    plain = unquote(value)
    return plain not in ("", ".", "..") and "/" not in plain and "\\" not in plain


class SignedUrlPlugin(Plugin[SignedUrlConfig]):
    name: ClassVar[str] = "signed_url"
    # After auth (a bound subject, an issuing caller), rate_limit (guessing is throttled)
    # and forward_auth (which may decide whether this caller may have this link); before
    # validate (800), so a bad signature is refused before any body is read.
    priority: ClassVar[int] = 820
    config_type: ClassVar[type[msgspec.Struct]] = SignedUrlConfig
    settings_type: ClassVar[type[msgspec.Struct] | None] = SignedUrlSettings

    def __init__(self, config: SignedUrlConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, SignedUrlSettings) else SignedUrlSettings()
        if not settings.keys:
            raise ValueError("plugins.signed_url.keys is empty: signed URLs need at least one key")
        runtime: WorkerRuntime = setup.runtime
        self._signer = runtime.singleton(SIGNER_KEY, lambda: signer_of(settings))
        route = setup.route.name
        self._issue = config.mode == "issue"
        self._bind_ip = config.bind == "ip"
        self._bind_subject = config.bind == "subject"
        self._strip = not config.forward_signature
        self._ttl = config.ttl
        self._method = config.method
        self._base = config.base_url.rstrip("/") if config.base_url else ""
        # The target is a path template like a route's (config.py checked it compiles).
        self._target = Template(config.target) if config.target is not None else None
        if self._issue:
            if settings.signing_key is None:
                raise ValueError("mode issue needs a key that signs (every key of plugins.signed_url is verify_only)")
            if config.ttl > settings.max_ttl:
                raise ValueError(f"ttl {config.ttl} exceeds plugins.signed_url.max_ttl ({settings.max_ttl})")
        self._valid = deferred(CHECKS.labels(route, "valid"))
        self._refused = {reason: CHECKS.labels(route, reason) for reason in REASONS}
        self._refusals = {reason: Refusal(AuditType.FORBIDDEN, f"signed_url_{reason}") for reason in REASONS}
        self._anonymous = Refusal(AuditType.AUTH_FAILURE, "signed_url_anonymous")
        self._issued = deferred(ISSUED.labels(route))

    def check(self) -> None:
        target = self._target
        if target is None:
            return
        path = self.route.path
        available = set(Template(path).names) if is_template(path) else set()
        for name in target.names:
            if name not in available:
                known = ", ".join(sorted(available)) or "none"
                raise ValueError(f"target names {{{name}}}, which is not a parameter of the route's path "
                                 f"'{path}' (parameters: {known})")

    async def on_request(self, ctx: RequestContext) -> Verdict:
        if self._issue:
            return self._issue_link(ctx)
        binding = b""
        if self._bind_ip:
            binding = bind_ip(ctx.client_ip)
        elif self._bind_subject:
            identity = ctx.identity
            if identity is None:
                return self._refuse(ctx, UNBOUND)
            binding = bind_subject(identity.subject)
        try:
            rest = self._signer.verify(ctx.method, ctx.path, ctx.query, binding)
        except Refused as refused:
            return self._refuse(ctx, refused.reason)
        if self._strip:
            ctx.query = rest
        self._valid.inc()
        ctx.report(OUTCOME, "valid")
        return CONTINUE

    def _refuse(self, ctx: RequestContext, reason: str) -> LocalResponse:
        self._refused[reason].inc()
        ctx.report(OUTCOME, reason)
        return INVALID.response(ctx.request_id, self._refusals[reason])

    def _issue_link(self, ctx: RequestContext) -> LocalResponse:
        identity = ctx.identity
        if identity is None:
            return ANONYMOUS.response(ctx.request_id, self._anonymous)
        target = self._target
        assert target is not None
        params = ctx.path_params or {}
        for name in target.names:
            value = params.get(name)
            if value is None or not one_segment(value):
                return UNSIGNABLE.response(ctx.request_id)
        binding = b""
        if self._bind_ip:
            binding = bind_ip(ctx.client_ip)
        elif self._bind_subject:
            binding = bind_subject(identity.subject)
        try:
            # Values are path text as the request had it (escapes included): expanded as is.
            path = normalize(target.expand(params).encode("ascii"))
            url, expires = self._signer.sign(self._method, path, ttl=self._ttl, binding=binding)
        except (TemplateError, UnsafePath, UnicodeEncodeError, ValueError):
            return UNSIGNABLE.response(ctx.request_id)
        self._issued.inc()
        ctx.report(OUTCOME, "issued")
        body = orjson.dumps({"url": self._base + url, "expires_at": expires, "method": self._method})
        return LocalResponse(200, ANSWER_HEADERS, body)
