"""The core's dispatcher built by hand, without a config file, for the unit tests of the
gateway and the proxy: routes with chosen plugins, services on real (scripted) upstreams,
and an ASGI driver that collects what the gateway sends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hotpath.context import Header, RequestContext, RouteInfo
from hotpath.gateway import Gateway
from hotpath.headers import RequestHeaderPolicy, TrustedProxies
from hotpath.plugin import Chain, Plugin, PluginSetup
from hotpath.proxy import Proxy
from hotpath.redis.config import RedisConfig
from hotpath.redis.state import SharedState
from hotpath.resilience.contracts import Breaker, RetryPolicy
from hotpath.router import Route, RouteTable
from hotpath.runtime import WorkerRuntime
from hotpath.structs import Strict
from hotpath.telemetry import Telemetry
from hotpath.upstream.config import ServiceConfig, Timeouts
from hotpath.upstream.h1_client import H1UpstreamClient
from hotpath.upstream.service import Service


class CountingTelemetry(Telemetry):
    """Counts the hooks, to check each runs exactly once per request."""

    def __init__(self) -> None:
        self.started: list[RequestContext] = []
        self.finished: list[RequestContext] = []

    def request_started(self, ctx: RequestContext) -> None:
        self.started.append(ctx)

    def request_finished(self, ctx: RequestContext) -> None:
        self.finished.append(ctx)


def service(url: str, *, total: float = 5.0, read: float = 5.0, breaker: Breaker | None = None,
            retry: RetryPolicy | None = None) -> Service:
    timeouts = Timeouts(connect=1.0, read=read, total=total)
    cfg = ServiceConfig(urls=(url,), timeouts=timeouts)
    return Service("backend", cfg, H1UpstreamClient(timeouts, cfg.pool), breaker=breaker, retry=retry)


def route(svc: Service, path: str = "/api", *, name: str = "api", methods: tuple[str, ...] = (),
          plugins: Sequence[Plugin[Any]] = (), max_body: int = 1 << 20, match: str = "prefix") -> Route:
    return Route(RouteInfo(name, path, svc.name, methods), match=match, service=svc, strip_prefix=False,
                 upstream_prefix="", timeout=svc.config.timeouts.total, max_body_bytes=max_body,
                 retry_non_idempotent=False, chain=Chain(list(plugins)))


def gateway(routes: list[Route], telemetry: Telemetry | None = None, *, unrouted: list[Header] | None = None,
            **limits: int) -> Gateway:
    tele = telemetry or Telemetry()
    trusted = TrustedProxies(())
    return Gateway(RouteTable(routes), Proxy(RequestHeaderPolicy((), trusted), tele), tele, trusted,
                   max_uri_bytes=limits.get("max_uri", 8192), max_header_bytes=limits.get("max_header", 32768),
                   keep_encoded_slash=False, unrouted_headers=unrouted)


class Answer:
    """What the gateway sent: status, headers, the joined body, and each body message."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[Header] = []
        self.chunks: list[bytes] = []

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message["headers"])
        else:
            self.chunks.append(message.get("body", b""))


async def call(gw: Gateway, method: str, target: str, headers: list[Header] | None = None,
               body: Sequence[bytes] = ()) -> Answer:
    """One request: ``body`` is the client's body messages (the last one ends it)."""
    path, _, query = target.partition("?")
    scope = {"type": "http", "method": method, "scheme": "http", "raw_path": path.encode(),
             "query_string": query.encode(), "headers": headers or [], "client": ("127.0.0.1", 50000)}
    messages = [{"type": "http.request", "body": b, "more_body": i < len(body) - 1} for i, b in enumerate(body)]
    messages = messages or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    answer = Answer()
    await gw.handle(scope, receive, answer.send)
    return answer


class NoConfig(Strict, frozen=True, kw_only=True):
    pass


def setup() -> PluginSetup:
    """What a plugin built by hand for route ``api`` receives."""
    return PluginSetup(RouteInfo("api", "/api", "backend"), None, WorkerRuntime(SharedState("memory", RedisConfig())))
