"""The configuration file's schema, as immutable typed structs.

Every struct forbids unknown keys, so a typo stops startup instead of being ignored.
Mappings keyed by user-chosen names (services, plugin sections) are validated entry by
entry by the loader, so errors name the entry (``services.users.timeouts.connect``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from controlplane.admin.config import AdminConfig
from hotpath.redis.config import RedisConfig
from hotpath.structs import Port, Seconds, Strict
from hotpath.upstream.config import ServiceConfig
from observability.audit_config import AuditConfig
from observability.config import ObservabilityConfig

__all__ = ["GatewayConfig", "RedisConfig", "RouteConfig", "ServerConfig", "ServiceConfig", "StateConfig"]


class ServerConfig(Strict, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: Port = 8080
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    # Granian counts connections, not requests, for backpressure: size it above the
    # keep-alive connections a load balancer holds open per worker.
    backpressure: Annotated[int, msgspec.Meta(ge=1)] = 2048
    backlog: Annotated[int, msgspec.Meta(ge=128)] = 2048
    # Seconds readiness reports false after SIGTERM while the gateway still serves, so the
    # load balancer stops sending before connections close.
    drain_delay: Annotated[float, msgspec.Meta(ge=0, le=300)] = 0.0
    # Seconds in-flight requests get to finish after accept stops; then workers are killed.
    shutdown_grace: Annotated[float, msgspec.Meta(gt=0, le=600)] = 25.0
    respawn_failed_workers: bool = True
    # Client addresses (CIDR) whose X-Forwarded-* headers are trusted.
    trusted_proxies: tuple[str, ...] = ()
    max_uri_bytes: Annotated[int, msgspec.Meta(ge=256, le=1_048_576)] = 8192
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 32_768
    # What to do with %2F / %5C inside a path segment: reject with 400, or keep them
    # encoded (never treated as a separator for routing).
    encoded_slash: Literal["reject", "keep"] = "reject"
    # Headers the gateway owns: always removed from client requests, set only by plugins.
    identity_headers: tuple[str, ...] = (
        "x-user-id",
        "x-user-roles",
        "x-user-scopes",
        "x-user-tier",
        "x-auth-subject",
    )


class StateConfig(Strict, frozen=True, kw_only=True):
    # "auto": Redis when redis.url is set, else in-process.
    backend: Literal["auto", "redis", "memory"] = "auto"


class RouteConfig(Strict, frozen=True, kw_only=True):
    name: str
    path: str
    match: Literal["prefix", "exact"] = "prefix"
    methods: tuple[str, ...] = ()
    service: str
    strip_prefix: bool = False
    # Replaces the matched prefix (after strip_prefix) when forwarding.
    upstream_prefix: str = ""
    timeout: Seconds | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=0)] = 10 * 1024 * 1024
    # Opt in to retrying non-idempotent methods on this route.
    retry_non_idempotent: bool = False
    plugins: dict[str, Any] = {}


class GatewayConfig(Strict, frozen=True, kw_only=True):
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    redis: RedisConfig = RedisConfig()
    services: dict[str, Any] = {}
    routes: tuple[dict[str, Any], ...] = ()
    # Global settings per plugin, keyed by plugin name.
    plugins: dict[str, Any] = {}
    # Plugins applied to every route unless the route sets its own config for them.
    default_plugins: dict[str, Any] = {}
    # Third-party plugins to load by dotted path ("package.module:PluginClass").
    plugin_modules: tuple[str, ...] = ()
    # Owned by their modules, which replace these with typed structs.
    observability: ObservabilityConfig = ObservabilityConfig()
    admin: AdminConfig = AdminConfig()
    audit: AuditConfig = AuditConfig()
