"""Assemble the admin API for one worker and tie its listener to the worker's lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlplane.admin.app import AdminApplication, AdminEndpoint
from controlplane.admin.auth_endpoints import auth_endpoints
from controlplane.admin.breaker_endpoints import breaker_endpoints
from controlplane.admin.cache_endpoints import cache_endpoints
from controlplane.admin.config import AdminSettingsError, resolve_token
from controlplane.admin.core_endpoints import core_endpoints
from controlplane.admin.listener import AdminListener
from controlplane.admin.openapi import build_document
from controlplane.admin.rate_limit_endpoints import ratelimit_endpoints
from controlplane.admin.signed_url_endpoints import signed_url_endpoints
from controlplane.config.errors import ConfigError

if TYPE_CHECKING:
    from controlplane.config.loader import LoadedConfig
    from hotpath.runtime import WorkerRuntime
    from hotpath.upstream.service import Service

VERSION = "1"


def admin_token(loaded: LoadedConfig) -> str | None:
    """The admin token, None when the admin API is off; ConfigError when misconfigured."""
    cfg = loaded.gateway.admin
    try:
        token = resolve_token(cfg)
    except AdminSettingsError as exc:
        raise ConfigError(loaded.file, f"admin.{exc.field}", str(exc)) from None
    server = loaded.gateway.server
    if token is not None and cfg.port == server.port:
        raise ConfigError(loaded.file, "admin.port", f"port {cfg.port} is the gateway's own port")
    return token


def build_admin(loaded: LoadedConfig, runtime: WorkerRuntime, services: dict[str, Service]) -> AdminListener | None:
    token = admin_token(loaded)
    if token is None:
        return None
    cfg = loaded.gateway.admin
    endpoints: list[AdminEndpoint] = [
        *core_endpoints(loaded, services, cfg.probe_timeout),
        *ratelimit_endpoints(runtime),
        *breaker_endpoints(runtime),
        *cache_endpoints(runtime),
        *auth_endpoints(runtime, loaded.plugin_settings.get("auth")),
        *signed_url_endpoints(loaded.plugin_settings.get("signed_url")),
    ]
    app = AdminApplication(token, runtime.audit, endpoints, build_document(endpoints, VERSION))
    listener = AdminListener(
        app,
        cfg.host,
        cfg.port,
        timeout=cfg.request_timeout,
        max_body=cfg.max_body_bytes,
        max_connections=cfg.max_connections,
    )

    async def start() -> None:
        await app.start()  # type: ignore[no-untyped-call]
        await listener.start()

    async def stop() -> None:
        await listener.stop()
        await app.stop()  # type: ignore[no-untyped-call]

    runtime.on_startup(start)
    runtime.on_shutdown(stop)
    return listener
