"""The ``auth`` plugin: bearer JWT verification, route policy, identity propagation.

Per request, a cached token costs one header scan, one dict lookup and an ``exp`` check;
the identity and the upstream identity headers come ready-made from the cache. Only a
token naming an unknown ``kid`` (or arriving before the first JWKS fetch) waits on I/O,
and then at most once per cooldown.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from hotpath.audit import AuditType, Refusal
from hotpath.context import RequestContext
from hotpath.deferred import deferred
from hotpath.errors import CannedError
from hotpath.plugin import CONTINUE, Plugin, PluginSetup, Verdict
from hotpath.responses import LocalResponse
from plugins.auth.config import AuthRouteConfig, AuthSettings
from plugins.auth.errors import InvalidToken, KeysUnavailable, Reason, UnknownKey
from plugins.auth.metrics import AUTH_DECISIONS
from plugins.auth.provider import Provider, static_keys
from plugins.auth.responses import AuthResponses
from plugins.auth.verifier import Verified

_BEARER: Final = b"bearer "


class AuthPlugin(Plugin[AuthRouteConfig]):
    name: ClassVar[str] = "auth"
    # Early: rate limits (which read the tier) and caches (which key on identity) come after.
    priority: ClassVar[int] = 1450
    config_type: ClassVar[type[msgspec.Struct]] = AuthRouteConfig
    settings_type: ClassVar[type[msgspec.Struct] | None] = AuthSettings

    def __init__(self, config: AuthRouteConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, AuthSettings) else AuthSettings()
        runtime = setup.runtime
        self._public = config.mode == "public"
        self._optional = config.mode == "optional"
        self._header = settings.header.lower().encode("ascii")
        realm = settings.realm
        self._responses = runtime.singleton(f"auth.responses.{realm}", lambda: AuthResponses(realm))
        self._scopes = frozenset(config.scopes)
        self._roles = frozenset(config.roles)
        self._all_roles = config.roles_match == "all"
        self._forbidden_scope = self._responses.forbidden(config.scopes, "the token lacks a required scope")
        self._forbidden_role = self._responses.forbidden(config.scopes, "the caller lacks a required role")
        route = setup.route.name
        # The per-request outcomes are counted in process and published in batches.
        self._allowed = deferred(AUTH_DECISIONS.labels(route, "allowed"))
        self._anonymous = deferred(AUTH_DECISIONS.labels(route, "anonymous"))
        self._missing = AUTH_DECISIONS.labels(route, "missing")
        self._invalid = AUTH_DECISIONS.labels(route, "invalid")
        self._forbidden = AUTH_DECISIONS.labels(route, "forbidden")
        self._unavailable = AUTH_DECISIONS.labels(route, "unavailable")
        self.provider: Provider | None = None
        self._refusals = self._refusals_for(None)
        if self._public:
            return
        name = config.provider or settings.default_provider
        if name is None and len(settings.providers) == 1:
            name = next(iter(settings.providers))
        known = ", ".join(sorted(settings.providers)) or "none is configured"
        if name is None:
            raise ValueError(f"provider: name one of plugins.auth.providers ({known})")
        if name not in settings.providers:
            raise ValueError(f"provider: unknown provider '{name}' (plugins.auth.providers: {known})")
        provider_config = settings.providers[name]

        def make() -> Provider:
            provider = Provider(name, provider_config)
            runtime.on_startup(provider.start)
            runtime.on_shutdown(provider.stop)
            return provider

        self.provider = runtime.singleton(f"auth.provider.{name}", make)
        self._verify = self.provider.verifier.verify
        self._refusals = self._refusals_for(name)

    @staticmethod
    def _refusals_for(provider: str | None) -> dict[str, Refusal]:
        """Why each 401 and 403 of this route refused, prepared for the audit plugin."""
        details: dict[str, Any] | None = {"provider": provider} if provider is not None else None
        out = {reason.value: Refusal(AuditType.AUTH_FAILURE, reason.value, details) for reason in Reason}
        for word in ("missing_scope", "missing_role"):
            out[word] = Refusal(AuditType.FORBIDDEN, word, details)
        return out

    @classmethod
    def validate_settings(cls, settings: msgspec.Struct | None) -> None:
        if not isinstance(settings, AuthSettings):
            return
        for name, provider in settings.providers.items():
            try:
                static_keys(provider)
            except ValueError as exc:
                raise ValueError(f"providers.{name}.{exc}") from None

    async def on_request(self, ctx: RequestContext) -> Verdict:
        if self._public:
            return CONTINUE
        value: bytes | None = None
        name = self._header
        for k, v in ctx.headers:
            if k == name:
                if value is not None:
                    # Two credentials: which one a proxy or upstream would read is anyone's guess.
                    return self._fail(ctx, Reason.MALFORMED)
                value = v
        if value is None or value[:7].lower() != _BEARER:
            if self._optional:
                self._anonymous.inc()
                return CONTINUE
            self._missing.inc()
            return self._responses.missing.response(ctx.request_id, self._refusals[Reason.MISSING.value])
        token = value[7:].strip()
        try:
            verified = self._verify(token)
        except InvalidToken as exc:
            return self._fail(ctx, exc.reason)
        except (UnknownKey, KeysUnavailable):
            result = await self._slow_path(ctx, token)
            if isinstance(result, LocalResponse):
                return result
            verified = result
        identity = verified.identity
        ctx.identity = identity
        if self._scopes and not self._scopes <= identity.scopes:
            return self._deny(ctx, self._forbidden_scope, "missing_scope")
        if self._roles and (
            not self._roles <= identity.roles if self._all_roles else self._roles.isdisjoint(identity.roles)
        ):
            return self._deny(ctx, self._forbidden_role, "missing_role")
        ctx.upstream_headers.extend(verified.headers)
        self._allowed.inc()
        return CONTINUE

    async def _slow_path(self, ctx: RequestContext, token: bytes) -> Verified | LocalResponse:
        assert self.provider is not None
        try:
            return await self.provider.verify_after_refresh(token)
        except InvalidToken as exc:
            return self._fail(ctx, exc.reason)
        except KeysUnavailable:
            self._unavailable.inc()
            return self._responses.unavailable.response(ctx.request_id)

    def _fail(self, ctx: RequestContext, reason: Reason) -> LocalResponse:
        self._invalid.inc()
        return self._responses.invalid[reason].response(ctx.request_id, self._refusals[reason.value])

    def _deny(self, ctx: RequestContext, canned: CannedError, reason: str) -> LocalResponse:
        self._forbidden.inc()
        return canned.response(ctx.request_id, self._refusals[reason])
