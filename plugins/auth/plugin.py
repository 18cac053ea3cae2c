"""The ``auth`` plugin: bearer JWT and API-key verification, route policy, identity
propagation.

Per request, a cached token costs one header scan, one dict lookup and an ``exp`` check;
the identity and the upstream identity headers come ready-made from the cache. Only a
token naming an unknown ``kid`` (or arriving before the first JWKS fetch) waits on I/O,
and then at most once per cooldown. An API key costs a SHA-256 and a dict lookup; only a
key that only Redis knows, and that this worker has not seen within ``cache_ttl``, waits
on Redis.
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
from hotpath.runtime import WorkerRuntime
from plugins.auth.api_keys import EXPIRED, MALFORMED, MISSING, UNKNOWN, KeyRefused, KeySet, StoreUnavailable
from plugins.auth.config import AuthRouteConfig, AuthSettings
from plugins.auth.errors import InvalidToken, KeysUnavailable, Reason, UnknownKey
from plugins.auth.key_store import KeyStore
from plugins.auth.metrics import AUTH_DECISIONS
from plugins.auth.provider import Provider, static_keys
from plugins.auth.responses import ApiKeyResponses, AuthResponses
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
        self._bearer_ok = "bearer" in config.credentials
        scheme = "Bearer" if self._bearer_ok else "ApiKey"
        who = "token" if config.credentials == ("bearer",) else "caller"
        self._forbidden_scope = self._responses.forbidden(config.scopes, f"the {who} lacks a required scope", scheme)
        self._forbidden_role = self._responses.forbidden(config.scopes, "the caller lacks a required role", scheme)
        route = setup.route.name
        # The per-request outcomes are counted in process and published in batches.
        self._allowed = deferred(AUTH_DECISIONS.labels(route, "allowed"))
        self._anonymous = deferred(AUTH_DECISIONS.labels(route, "anonymous"))
        self._missing = AUTH_DECISIONS.labels(route, "missing")
        self._invalid = AUTH_DECISIONS.labels(route, "invalid")
        self._forbidden = AUTH_DECISIONS.labels(route, "forbidden")
        self._unavailable = AUTH_DECISIONS.labels(route, "unavailable")
        self.provider: Provider | None = None
        self.keys: KeySet | None = None
        # Every key set's header: no client request forwards one, whatever the route.
        self._key_headers = tuple(ks.header for ks in settings.key_sets.values())
        self._refusals = self._refusals_for(None, None)
        if self._public:
            return
        # Names returned, not read back from self: compiled, an attribute narrowed to None
        # above stays None to the compiler across the calls that set it.
        key_set = self._key_set(config, settings, runtime) if "api_key" in config.credentials else None
        provider = self._provider(config, settings, runtime) if self._bearer_ok else None
        self._refusals = self._refusals_for(provider, key_set)

    def _key_set(self, config: AuthRouteConfig, settings: AuthSettings, runtime: WorkerRuntime) -> str:
        name = config.key_set or settings.default_key_set
        if name is None and len(settings.key_sets) == 1:
            name = next(iter(settings.key_sets))
        known = ", ".join(sorted(settings.key_sets)) or "none is configured"
        if name is None:
            raise ValueError(f"key_set: name one of plugins.auth.key_sets ({known})")
        if name not in settings.key_sets:
            raise ValueError(f"key_set: unknown key set '{name}' (plugins.auth.key_sets: {known})")
        key_config = settings.key_sets[name]
        if key_config.redis and runtime.state.kind != "redis":
            raise ValueError(f"key set '{name}' keeps keys in Redis (redis: true), but no Redis is configured "
                             "(set redis.url or REDIS_URL)")

        def make() -> KeySet:
            store = None
            if key_config.redis:
                state = runtime.state
                store = KeyStore(state.redis, state.keys.feature("apikey"), name, state.config.command_timeout)
            return KeySet(name, key_config, store)

        keys = runtime.singleton(f"auth.key_set.{name}", make)
        self.keys = keys
        realm = settings.realm
        self._key_responses = ApiKeyResponses(realm, key_config.header, self._bearer_ok)
        return name

    def _provider(self, config: AuthRouteConfig, settings: AuthSettings, runtime: WorkerRuntime) -> str:
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

        provider = runtime.singleton(f"auth.provider.{name}", make)
        self.provider = provider
        self._verify = provider.verifier.verify
        return name

    @staticmethod
    def _refusals_for(provider: str | None, key_set: str | None) -> dict[str, Refusal]:
        """Why each 401 and 403 of this route refused, prepared for the audit plugin."""
        details: dict[str, Any] | None = {"provider": provider} if provider is not None else None
        out = {reason.value: Refusal(AuditType.AUTH_FAILURE, reason.value, details) for reason in Reason}
        key_details: dict[str, Any] = {"key_set": key_set}
        for word in (MISSING, MALFORMED, UNKNOWN, EXPIRED):
            out[word] = Refusal(AuditType.AUTH_FAILURE, word, key_details)
        if key_set is not None:
            details = {**(details or {}), "key_set": key_set}
        for word in ("missing_scope", "missing_role"):
            out[word] = Refusal(AuditType.FORBIDDEN, word, details)
        return out

    def owned_headers(self) -> tuple[str, ...]:
        return self._key_headers

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
        keys = self.keys
        if keys is not None:
            return await self._key_route(ctx, keys)
        value: bytes | None = None
        name = self._header
        for k, v in ctx.headers:
            if k == name:
                if value is not None:
                    # Two credentials: which one a proxy or upstream would read is anyone's guess.
                    return self._fail(ctx, Reason.MALFORMED)
                value = v
        return await self._bearer(ctx, value)

    async def _key_route(self, ctx: RequestContext, keys: KeySet) -> Verdict:
        """A route that takes API keys (and perhaps bearer tokens as well)."""
        key: bytes | None = None
        value: bytes | None = None
        key_name = keys.header
        name = self._header if self._bearer_ok else None
        for k, v in ctx.headers:
            if k == key_name:
                if key is not None:
                    return self._key_fail(ctx, MALFORMED)
                key = v
            elif k == name:
                if value is not None:
                    return self._fail(ctx, Reason.MALFORMED)
                value = v
        if key is None:
            if self._bearer_ok:
                return await self._bearer(ctx, value, self._key_responses.missing)
            if self._optional:
                self._anonymous.inc()
                return CONTINUE
            self._missing.inc()
            return self._key_responses.missing.response(ctx.request_id, self._refusals[MISSING])
        if value is not None and value[:7].lower() == _BEARER:
            # A key and a token: two identities, and nothing says which one the caller meant.
            return self._key_fail(ctx, MALFORMED)
        try:
            found = keys.check(key.strip())
            verified = found if isinstance(found, Verified) else await keys.lookup(found)
        except KeyRefused as refused:
            return self._key_fail(ctx, refused.reason)
        except StoreUnavailable:
            self._unavailable.inc()
            return self._key_responses.unavailable.response(ctx.request_id)
        return self._admit(ctx, verified)

    async def _bearer(
        self, ctx: RequestContext, value: bytes | None, missing: CannedError | None = None
    ) -> Verdict:
        """The route's bearer token (the header's value, None without one)."""
        if value is None or value[:7].lower() != _BEARER:
            if self._optional:
                self._anonymous.inc()
                return CONTINUE
            self._missing.inc()
            answer = missing if missing is not None else self._responses.missing
            return answer.response(ctx.request_id, self._refusals[Reason.MISSING.value])
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
        return self._admit(ctx, verified)

    def _admit(self, ctx: RequestContext, verified: Verified) -> Verdict:
        """A verified caller: the route's scopes and roles, then the identity headers."""
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

    def _key_fail(self, ctx: RequestContext, reason: str) -> LocalResponse:
        self._invalid.inc()
        return self._key_responses.invalid[reason].response(ctx.request_id, self._refusals[reason])

    def _deny(self, ctx: RequestContext, canned: CannedError, reason: str) -> LocalResponse:
        self._forbidden.inc()
        return canned.response(ctx.request_id, self._refusals[reason])
