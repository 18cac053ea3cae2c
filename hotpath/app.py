"""The ASGI application each Granian worker imports (``hotpath.app:create_app``).

A BlackSheep ``Application`` serves the gateway's own endpoints (health, metrics) and owns
the lifespan; every other request goes straight to the ``Gateway`` dispatcher on raw ASGI.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from blacksheep import Application, Response
from blacksheep.contents import Content

from hotpath.build import build_gateway
from hotpath.config.loader import LoadedConfig, load_config
from hotpath.gateway import Gateway
from hotpath.health import Health
from hotpath.lifecycle import DrainState, marker_path
from hotpath.runtime import WorkerRuntime

CONFIG_ENV = "GATEHOUSE_CONFIG"
_OWN_PREFIXES = (b"/health", b"/metrics")

log = logging.getLogger("gatehouse")


def _json(status: int, payload: dict[str, Any]) -> Response:
    import orjson

    return Response(status, [(b"cache-control", b"no-store")], Content(b"application/json", orjson.dumps(payload)))


class GatewayApplication(Application):  # type: ignore[misc]
    def __init__(self, gateway: Gateway, runtime: WorkerRuntime, health: Health, drain: DrainState) -> None:
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

    async def _on_start(self, _: Any) -> None:
        await self.runtime.start()

    async def _on_stop(self, _: Any) -> None:
        self.drain.start_local()
        await self.runtime.stop()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["raw_path"].startswith(_OWN_PREFIXES):
            await self._handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_app(loaded: LoadedConfig, runtime: WorkerRuntime | None = None) -> GatewayApplication:
    runtime = runtime or WorkerRuntime(loaded)
    gateway, services = build_gateway(loaded, runtime)
    drain = DrainState(marker_path())
    return GatewayApplication(gateway, runtime, Health(runtime, services, drain), drain)


def create_app() -> GatewayApplication:
    """Granian's factory target: load the config named by ``GATEHOUSE_CONFIG``."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the gateway with `gatehouse run -c FILE`")
    return build_app(load_config(path))
