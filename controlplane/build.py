"""Compile a validated configuration into a worker's runtime objects, once.

``build_gateway`` creates per-service pooled clients, the plugin instances of every route,
each route's per-phase chain and the immutable route table. It does no I/O: connections
and background tasks start with ``WorkerRuntime.start`` in the lifespan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from controlplane.breakers import attach_resilience
from controlplane.config.errors import ConfigError
from controlplane.config.loader import LoadedConfig, locate_line
from hotpath import errors
from hotpath.audit import NullAuditSink
from hotpath.context import Header, RequestContext, RouteInfo
from hotpath.errors import CannedError, ErrorCode
from hotpath.gateway import Gateway
from hotpath.headers import RequestHeaderPolicy, TrustedProxies
from hotpath.plugin import Chain, Plugin, PluginSetup, Verdict
from hotpath.proxy import Proxy
from hotpath.redis.state import SharedState
from hotpath.router import Route, RouteTable
from hotpath.runtime import WorkerRuntime
from hotpath.structs import Strict
from hotpath.upstream.client import UpstreamClient
from hotpath.upstream.config import ServiceConfig
from hotpath.upstream.h1_client import H1UpstreamClient
from hotpath.upstream.service import Service

ClientFactory = Callable[[ServiceConfig], UpstreamClient]

# The plugin every route gets once audit events have somewhere to go, unless the route
# configures it or switches it off (``audit: false``): refusals are then recorded as before
# routes could choose.
IMPLICIT_AUDIT = "audit"


class NoConfig(Strict, frozen=True, kw_only=True):
    pass


def default_client(config: ServiceConfig) -> UpstreamClient:
    return H1UpstreamClient(config.timeouts, config.pool)


def new_runtime(loaded: LoadedConfig, **parts: Any) -> WorkerRuntime:
    """A worker's runtime for this configuration (telemetry and audit sink optional)."""
    state = SharedState("redis" if loaded.state_backend == "redis" else "memory", loaded.gateway.redis)
    return WorkerRuntime(state, workers=loaded.gateway.server.workers, **parts)


def build_services(
    loaded: LoadedConfig, runtime: WorkerRuntime, client_factory: ClientFactory = default_client
) -> dict[str, Service]:
    services: dict[str, Service] = {}
    for name, cfg in loaded.services.items():
        svc = Service(name, cfg, client_factory(cfg))
        attach_resilience(svc, runtime)
        services[name] = svc

    async def start_clients() -> None:
        for svc in services.values():
            await svc.client.start()

    async def close_clients() -> None:
        for svc in services.values():
            await svc.client.close()

    runtime.on_startup(start_clients)
    runtime.on_shutdown(close_clients)
    return services


def _plugins_of(loaded: LoadedConfig, index: int, runtime: WorkerRuntime) -> list[tuple[type[Plugin[Any]], Any]]:
    vr = loaded.routes[index]
    plugins = list(vr.plugins)
    named = {cls.name for cls, _ in plugins} | vr.switched_off
    audit = loaded.registry.get(IMPLICIT_AUDIT)
    if audit is not None and IMPLICIT_AUDIT not in named and not isinstance(runtime.audit, NullAuditSink):
        plugins.append((audit, audit.config_type()))
    return plugins


class DisabledRoute(Plugin[NoConfig]):
    """The whole chain of a route the environment switched off (``ROUTES_DISABLED``): it
    answers 404 as if the route did not exist, but keeps its paths, so a shorter prefix
    route never serves them instead (with other plugins, or none)."""

    name: ClassVar[str] = "disabled"
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(
        self, info: RouteInfo, runtime: WorkerRuntime, extra_headers: list[Header], replaced: list[Plugin[Any]]
    ) -> None:
        super().__init__(NoConfig(), PluginSetup(info, None, runtime))
        self._answer = CannedError(404, ErrorCode.NOT_FOUND, errors.NOT_FOUND.message, extra_headers)
        # What the route's own plugins own stays owned: a key header is never forwarded
        # because the only route that reads it is switched off.
        self._owned = tuple(h for plugin in replaced for h in plugin.owned_headers())

    def owned_headers(self) -> tuple[str, ...]:
        return self._owned

    async def on_request(self, ctx: RequestContext) -> Verdict:
        ctx.report("route", "disabled")
        return self._answer.response(ctx.request_id)


def build_routes(loaded: LoadedConfig, runtime: WorkerRuntime, services: dict[str, Service]) -> RouteTable:
    routes: list[Route] = []
    config_dir = os.path.dirname(os.path.abspath(loaded.file))
    off_headers = unrouted_headers(loaded)
    for i, vr in enumerate(loaded.routes):
        rc = vr.config
        info = RouteInfo(rc.name, rc.path, rc.service, rc.methods, rc.max_body_bytes)
        instances: list[Plugin[Any]] = []
        for cls, cfg in _plugins_of(loaded, i, runtime):
            setup = PluginSetup(info, loaded.plugin_settings.get(cls.name), runtime, config_dir)
            try:
                plugin = cls(cfg, setup)
                plugin.check()
            except ValueError as exc:
                where = f"routes[{i}].plugins.{cls.name}"
                raise ConfigError(loaded.file, where, str(exc), locate_line(loaded.file, where)) from None
            instances.append(plugin)
        if rc.name in loaded.env.disabled_routes:
            # Built all the same, so that `gatehouse check` finds what would stop it later.
            instances = [DisabledRoute(info, runtime, off_headers, instances)]
        service = services[rc.service]
        routes.append(
            Route(
                info,
                match=rc.match,
                service=service,
                strip_prefix=rc.strip_prefix,
                upstream_prefix=rc.upstream_prefix,
                timeout=rc.timeout or service.config.timeouts.total,
                max_body_bytes=rc.max_body_bytes,
                retry_non_idempotent=rc.retry_non_idempotent,
                chain=Chain(instances),
            )
        )
    return RouteTable(routes)


def build_gateway(
    loaded: LoadedConfig, runtime: WorkerRuntime, client_factory: ClientFactory = default_client
) -> tuple[Gateway, dict[str, Service]]:
    server = loaded.gateway.server
    services = build_services(loaded, runtime, client_factory)
    table = build_routes(loaded, runtime, services)
    trusted = TrustedProxies(server.trusted_proxies)
    policy = RequestHeaderPolicy(owned_headers(loaded, table), trusted)
    gateway = Gateway(
        table,
        Proxy(policy, runtime.telemetry),
        runtime.telemetry,
        trusted,
        max_uri_bytes=server.max_uri_bytes,
        max_header_bytes=server.max_header_bytes,
        keep_encoded_slash=server.encoded_slash == "keep",
        unrouted_headers=unrouted_headers(loaded),
    )
    return gateway, services


def owned_headers(loaded: LoadedConfig, table: RouteTable) -> list[str]:
    """Request headers no client may pass to an upstream: the identity headers, and those
    any route's plugins own (credentials they read, headers they set from a trusted answer)."""
    owned = {h.lower() for h in loaded.gateway.server.identity_headers}
    for route in table.routes:
        for plugin in route.chain.plugins:
            owned.update(h.lower() for h in plugin.owned_headers())
    return sorted(owned)


def unrouted_headers(loaded: LoadedConfig) -> list[Header]:
    """Response headers of answers that match no route, from the default plugins."""
    out: list[Header] = []
    for name, config in loaded.default_plugins.items():
        cls = loaded.registry.get(name)
        if cls is not None:
            out.extend(cls.unrouted_headers(config))
    return out
