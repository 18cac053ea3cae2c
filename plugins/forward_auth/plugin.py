"""The ``forward_auth`` plugin: ask an authorization service whether a request may pass.

Per request it describes the request (method, normalized path, the route template's path
parameters, the query if asked, selected headers, the verified identity) as JSON. An
answer this worker holds for that description is used at once; otherwise the worker's
hub asks (once per description, however many requests wait; once fleet-wide with Redis).
A 2xx answer lets the request through with the answer's chosen headers added to the
upstream request; a 401 or 403 refuses it; a timeout or any other answer applies the
route's failure mode, counted either way.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec
import orjson

from hotpath.audit import AuditType, Refusal
from hotpath.context import RequestContext
from hotpath.deferred import deferred
from hotpath.errors import CannedError, ErrorCode
from hotpath.plugin import CONTINUE, Plugin, PluginSetup, Verdict
from hotpath.runtime import WorkerRuntime
from plugins.forward_auth.answers import Answer
from plugins.forward_auth.config import ForwardAuthConfig, ForwardAuthSettings
from plugins.forward_auth.hub import HUB_KEY, CallFailed, Hub, Target
from plugins.forward_auth.metrics import CACHE, CALLS, DECISIONS

OUTCOME: Final = "forward_auth"
UNAUTHORIZED: Final = CannedError(401, ErrorCode.UNAUTHORIZED, "the authorization service did not accept the caller")
FORBIDDEN: Final = CannedError(403, ErrorCode.FORBIDDEN, "the authorization service refused this request")
UNAVAILABLE: Final = CannedError(503, ErrorCode.SERVICE_UNAVAILABLE, "authorization is unavailable; retry shortly")
dumps: Final = orjson.dumps


def hub_for(runtime: WorkerRuntime, settings: ForwardAuthSettings) -> Hub:
    def make() -> Hub:
        state = runtime.state
        hub = Hub(settings, state.redis if state.kind == "redis" else None, state.keys.feature("fauth"))
        runtime.on_startup(hub.start)
        runtime.on_shutdown(hub.stop)
        return hub

    return runtime.singleton(HUB_KEY, make)


class ForwardAuthPlugin(Plugin[ForwardAuthConfig]):
    name: ClassVar[str] = "forward_auth"
    # After rate_limit (900): the limits protect the authorization service too. Before the
    # plugins that issue links (signed_url), read bodies (validate) or answer from what the
    # upstream said (cache): an unauthorized caller costs none of that.
    priority: ClassVar[int] = 850
    config_type: ClassVar[type[msgspec.Struct]] = ForwardAuthConfig
    settings_type: ClassVar[type[msgspec.Struct] | None] = ForwardAuthSettings

    def __init__(self, config: ForwardAuthConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, ForwardAuthSettings) else ForwardAuthSettings()
        route = setup.route.name
        self._hub = hub_for(setup.runtime, settings)
        self._answers = self._hub.answers
        self._route = route
        send = frozenset(config.send)
        self._method = "method" in send
        self._path = "path" in send
        self._params = "path_params" in send
        self._query = "query" in send
        self._identity = "identity" in send
        self._headers = tuple((name, name.encode("ascii")) for name in config.headers)
        self._fail_open = config.failure == "open"
        self._target = Target(
            config.url, config.timeout, config.response_headers, config.cache_ttl,
            {result: CALLS.labels(route, result) for result in ("allowed", "denied", "timeout", "error")},
            CACHE.labels(route, "shared"), CACHE.labels(route, "joined"),
        )
        self._hits = deferred(CACHE.labels(route, "hit"))
        self._allowed = deferred(DECISIONS.labels(route, "allowed"))
        self._denied = DECISIONS.labels(route, "denied")
        self._failed_open = DECISIONS.labels(route, "failed_open")
        self._failed_closed = DECISIONS.labels(route, "failed_closed")
        self._refused_401 = Refusal(AuditType.AUTH_FAILURE, "forward_auth_denied", {"status": 401})
        self._refused_403 = Refusal(AuditType.FORBIDDEN, "forward_auth_denied", {"status": 403})

    def owned_headers(self) -> tuple[str, ...]:
        return self.config.response_headers

    def describe(self, ctx: RequestContext) -> bytes:
        """The request as the authorization service sees it; also the key of its answer."""
        out: dict[str, Any] = {"route": self._route}
        if self._method:
            out["method"] = ctx.method
        if self._path:
            out["path"] = ctx.path
        if self._params:
            out["path_params"] = ctx.path_params or {}
        if self._query:
            out["query"] = ctx.query.decode("latin-1")
        if self._headers:
            headers: dict[str, str | None] = {}
            for name, raw in self._headers:
                value = ctx.header(raw)
                headers[name] = value.decode("latin-1") if value is not None else None
            out["headers"] = headers
        if self._identity:
            identity = ctx.identity
            out["identity"] = None if identity is None else {
                "subject": identity.subject,
                "tier": identity.tier,
                "roles": sorted(identity.roles),
                "scopes": sorted(identity.scopes),
                "credential": identity.credential,
            }
        return dumps(out)

    async def on_request(self, ctx: RequestContext) -> Verdict:
        key = self.describe(ctx)
        answer: Answer | None = self._answers.get(key)
        if answer is not None:
            self._hits.inc()
        else:
            try:
                answer = await self._hub.answer(self._target, key, ctx.request_id)
            except CallFailed:
                if self._fail_open:
                    self._failed_open.inc()
                    ctx.report(OUTCOME, "failed_open")
                    return CONTINUE
                self._failed_closed.inc()
                ctx.report(OUTCOME, "failed_closed")
                # An outage, not the caller's doing: no refusal to audit.
                return UNAVAILABLE.response(ctx.request_id, None, retry_after=1)
        if answer.allows:
            if answer.headers:
                ctx.upstream_headers.extend(answer.headers)
            self._allowed.inc()
            ctx.report(OUTCOME, "allowed")
            return CONTINUE
        self._denied.inc()
        ctx.report(OUTCOME, "denied")
        if answer.status == 401:
            return UNAUTHORIZED.response(ctx.request_id, self._refused_401)
        return FORBIDDEN.response(ctx.request_id, self._refused_403)
