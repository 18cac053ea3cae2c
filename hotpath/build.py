"""Compile a validated configuration into a worker's runtime objects, once.

``build_gateway`` creates per-service pooled clients, the plugin instances of every route,
each route's per-phase chain and the immutable route table. It does no I/O: connections
and background tasks start with ``WorkerRuntime.start`` in the lifespan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hotpath.config.errors import ConfigError
from hotpath.config.loader import LoadedConfig
from hotpath.config.schema import ServiceConfig
from hotpath.gateway import Gateway
from hotpath.headers import RequestHeaderPolicy, TrustedProxies
from hotpath.plugin import Chain, Plugin, PluginSetup, RouteInfo
from hotpath.proxy import Proxy
from hotpath.resilience.wiring import attach_resilience
from hotpath.router import Route, RouteTable
from hotpath.runtime import WorkerRuntime
from hotpath.upstream.client import UpstreamClient
from hotpath.upstream.h1_client import H1UpstreamClient
from hotpath.upstream.service import Service

ClientFactory = Callable[[ServiceConfig], UpstreamClient]


def default_client(config: ServiceConfig) -> UpstreamClient:
    return H1UpstreamClient(config.timeouts, config.pool)


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


def build_routes(loaded: LoadedConfig, runtime: WorkerRuntime, services: dict[str, Service]) -> RouteTable:
    routes: list[Route] = []
    for i, vr in enumerate(loaded.routes):
        rc = vr.config
        info = RouteInfo(name=rc.name, path=rc.path, service=rc.service, methods=rc.methods)
        instances: list[Plugin[Any]] = []
        for cls, cfg in vr.plugins:
            setup = PluginSetup(info, loaded.plugin_settings.get(cls.name), runtime)
            try:
                plugin = cls(cfg, setup)
                plugin.check()
            except ValueError as exc:
                raise ConfigError(loaded.file, f"routes[{i}].plugins.{cls.name}", str(exc)) from None
            instances.append(plugin)
        service = services[rc.service]
        routes.append(
            Route(
                name=rc.name,
                path=rc.path,
                match=rc.match,
                methods=frozenset(rc.methods),
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
    policy = RequestHeaderPolicy(server.identity_headers, trusted)
    gateway = Gateway(
        table,
        Proxy(policy, runtime.telemetry),
        runtime.telemetry,
        trusted,
        max_uri_bytes=server.max_uri_bytes,
        max_header_bytes=server.max_header_bytes,
        keep_encoded_slash=server.encoded_slash == "keep",
    )
    return gateway, services

