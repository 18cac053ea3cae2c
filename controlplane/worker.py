"""The ASGI application each Granian worker builds (``controlplane.worker:create_app``).

A BlackSheep ``Application`` serves the gateway's own endpoints (health, metrics) and owns
the lifespan; every other request goes straight to the ``Gateway`` dispatcher on raw ASGI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Coroutine
from typing import Any

from blacksheep import Application, Response
from blacksheep.contents import Content

from controlplane.build import build_gateway, new_runtime
from controlplane.config.loader import LoadedConfig, load_config
from controlplane.health import Health
from controlplane.lifecycle import DrainState, marker_path
from hotpath.gateway import Gateway
from hotpath.runtime import WorkerRuntime
from observability.gateway_telemetry import GatewayTelemetry
from observability.tracing import TracingSettingsError

CONFIG_ENV = "GATEHOUSE_CONFIG"
_OWN_PATHS = frozenset({b"/health", b"/health/live", b"/health/ready", b"/metrics"})

log = logging.getLogger("gatehouse")


def _json(status: int, payload: dict[str, Any]) -> Response:
    import orjson

    return Response(status, [(b"cache-control", b"no-store")], Content(b"application/json", orjson.dumps(payload)))


class GatewayApplication(Application):
    def __init__(
        self,
        gateway: Gateway,
        runtime: WorkerRuntime,
        health: Health,
        drain: DrainState,
        *,
        metrics_enabled: bool = True,
    ) -> None:
        super().__init__(show_error_details=False)
        self.gateway = gateway
        self.runtime = runtime
        self.drain = drain
        self._handle = gateway.handle
        self.on_start += self._on_start
        self.on_stop += self._on_stop

        async def live() -> Response:
            return _json(*health.live())

        async def ready() -> Response:
            return _json(*(await health.ready()))

        async def detail() -> Response:
            return _json(*(await health.detail()))

        self.router.add_get("/health/live", live)
        self.router.add_get("/health/ready", ready)
        self.router.add_get("/health", detail)
        if metrics_enabled:
            from observability.multiproc import CONTENT_TYPE, MetricsExposition

            exposition = MetricsExposition()
            publish = runtime.telemetry.publish_metrics

            async def metrics() -> Response:
                publish()  # this worker's batched request counts, so its own are current
                body = exposition.render()
                return Response(200, [(b"cache-control", b"no-store")], Content(CONTENT_TYPE, body))

            self.router.add_get("/metrics", metrics)

    async def _on_start(self, _: Any) -> None:
        await self.runtime.start()

    async def _on_stop(self, _: Any) -> None:
        self.drain.start_local()
        await self.runtime.stop()

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Coroutine[Any, Any, None]:
        # A plain method that hands back the dispatcher's compiled coroutine: an async method
        # here (this module is interpreted) is one more coroutine per request, and an
        # interpreted frame resumed at every one of its awaits.
        # Exact paths only: /healthcare or /metrics-v2 belong to the routes, not to us.
        if scope["type"] == "http" and scope["raw_path"] not in _OWN_PATHS:
            return self._handle(scope, receive, send)
        return super().__call__(scope, receive, send)  # type: ignore[no-untyped-call]


def build_telemetry(loaded: LoadedConfig) -> GatewayTelemetry:
    from controlplane.config.errors import ConfigError

    try:
        return GatewayTelemetry(
            loaded.gateway.observability,
            routes=tuple(vr.config.name for vr in loaded.routes),
            services=tuple(loaded.services),
        )
    except TracingSettingsError as exc:
        raise ConfigError(loaded.file, f"observability.tracing.{exc.field}", str(exc)) from None


def build_app(loaded: LoadedConfig, runtime: WorkerRuntime | None = None) -> GatewayApplication:
    from controlplane.admin.build import build_admin

    if runtime is None:
        from observability.audit import create_audit_sink

        gw = loaded.gateway
        audit = create_audit_sink(gw.audit, gw.observability.access_log.user_hash_key)
        runtime = new_runtime(loaded, telemetry=build_telemetry(loaded), audit=audit)
        if audit is not None:
            # Registered first, so it stops last: events emitted while draining still go out.
            runtime.on_startup(audit.start)
            runtime.on_shutdown(audit.stop)
    gateway, services = build_gateway(loaded, runtime)
    build_admin(loaded, runtime, services)
    drain = DrainState(marker_path())
    return GatewayApplication(
        gateway,
        runtime,
        Health(runtime, services, drain),
        drain,
        metrics_enabled=loaded.gateway.observability.metrics.enabled,
    )


def create_app() -> GatewayApplication:
    """Granian's factory target: load the config named by ``GATEHOUSE_CONFIG``."""
    from hotpath.native.loader import status as native_status

    native = native_status()
    if native.error:
        raise RuntimeError(native.error)
    log.info("%s", native.describe())
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the gateway with `gatehouse run -c FILE`")
    return build_app(load_config(path))
