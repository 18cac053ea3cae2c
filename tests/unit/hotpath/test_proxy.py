"""The proxy: request bodies (buffered, streamed, too large, observed), breaker refusals,
retries, upstream failures, and the response phase. Against a real scripted upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

import msgspec
import orjson

from hotpath.context import BodyTap, RequestContext
from hotpath.plugin import CONTINUE, Plugin, ResponseHead, Verdict
from hotpath.resilience.config import BreakerConfig, RetryConfig
from hotpath.resilience.local import LocalBreaker
from hotpath.resilience.policy import BreakerPolicy
from hotpath.resilience.retry import ServiceRetry
from tests.support.inprocess_gateway import NoConfig, call, gateway, route, service, setup
from tests.support.processes import free_port
from tests.support.scripted_peer import Handler, Peer, Request, answer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Recorder(BodyTap):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete: bool | None = None

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self, complete: bool) -> None:
        self.complete = complete


class Taps(Plugin[NoConfig]):
    """Watches the request body and the response: a tap on each, and a header changed."""

    name: ClassVar[str] = "taps"
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self) -> None:
        super().__init__(NoConfig(), setup())
        self.request = Recorder()
        self.response = Recorder()

    async def on_request(self, ctx: RequestContext) -> Verdict:
        ctx.tap_body(self.request)
        return CONTINUE

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        head.headers.append((b"x-tapped", b"1"))
        return self.response


def echo_body() -> Handler:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, q: Request) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(q.body), q.body))
        return True

    return handler


async def test_a_small_body_is_forwarded_whole_and_observed(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(echo_body())
    svc = service(peer.url)
    taps = Taps()
    gw = gateway([route(svc, plugins=[taps])])
    got = await call(gw, "POST", "/api", [(b"content-length", b"11")], [b"hello", b" world"])
    await svc.client.close()
    assert (got.status, got.body) == (200, b"hello world")
    assert peer.requests[0].headers["content-length"] == "11"
    assert b"".join(taps.request.chunks) == b"hello world" and taps.request.complete is True
    assert got.header(b"x-tapped") == b"1"
    assert b"".join(taps.response.chunks) == b"hello world" and taps.response.complete is True


async def test_a_chunked_body_streams_and_is_observed(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(echo_body())
    svc = service(peer.url)
    taps = Taps()
    gw = gateway([route(svc, plugins=[taps])])
    parts = [b"a" * 1000, b"b" * 1000, b"c"]
    got = await call(gw, "POST", "/api", [(b"transfer-encoding", b"chunked")], parts)
    await svc.client.close()
    assert got.status == 200 and got.body == b"".join(parts)
    assert peer.requests[0].headers.get("transfer-encoding") == "chunked"
    assert taps.request.chunks == parts and taps.request.complete is True


async def test_a_declared_body_over_the_limit_is_413_without_an_upstream_call(
    peer_factory: Callable[[Handler], Peer],
) -> None:
    peer = peer_factory(answer(OK))
    svc = service(peer.url)
    gw = gateway([route(svc, max_body=10)])
    got = await call(gw, "POST", "/api", [(b"content-length", b"11")], [b"x" * 11])
    streamed = await call(gw, "POST", "/api", [(b"transfer-encoding", b"chunked")], [b"x" * 8, b"x" * 8])
    await svc.client.close()
    assert got.status == 413 and orjson.loads(got.body)["error"]["details"] == {"limit_bytes": 10}
    assert streamed.status == 413
    assert all(r.body != b"x" * 16 for r in peer.requests)  # never a complete oversized body


async def test_an_open_breaker_refuses_and_reports_it(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
    policy = BreakerPolicy(BreakerConfig(consecutive_failures=2, failure_rate=None), default_probe_timeout=5.0)
    svc = service(peer.url, breaker=LocalBreaker("backend", policy))
    seen: list[RequestContext] = []

    class Logs(Taps):
        def on_log(self, ctx: RequestContext) -> None:
            seen.append(ctx)

    gw = gateway([route(svc, plugins=[Logs()])])
    statuses = [(await call(gw, "GET", "/api")).status for _ in range(3)]
    refused = await call(gw, "GET", "/api")
    await svc.client.close()
    assert statuses == [500, 500, 503]
    assert orjson.loads(refused.body)["error"]["code"] == "CIRCUIT_BREAKER_OPEN"
    assert int(refused.header(b"retry-after") or 0) >= 1
    assert len(peer.requests) == 2
    assert seen[-1].outcome("breaker") == "open"


async def test_idempotent_requests_are_retried_after_a_503(peer_factory: Callable[[Handler], Peer]) -> None:
    replies = [b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", OK]

    async def flaky(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _q: Request) -> bool:
        w.write(replies.pop(0))
        return True

    peer = peer_factory(flaky)
    retry = ServiceRetry("backend", RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.0))
    svc = service(peer.url, retry=retry)
    gw = gateway([route(svc)])
    got = await call(gw, "GET", "/api")
    await svc.client.close()
    assert (got.status, got.body, len(peer.requests)) == (200, b"ok", 2)


async def test_an_unreachable_upstream_is_502_and_a_slow_one_504(peer_factory: Callable[[Handler], Peer]) -> None:
    nothing = service(f"http://127.0.0.1:{free_port()}")

    async def silent(_r: asyncio.StreamReader, _w: asyncio.StreamWriter, _q: Request) -> bool:
        await asyncio.sleep(5)
        return False

    slow = service(peer_factory(silent).url, total=0.3, read=0.3)
    gw = gateway([route(nothing, "/down", name="down"), route(slow, "/slow", name="slow")])
    down = await call(gw, "GET", "/down")
    late = await call(gw, "GET", "/slow")
    await nothing.client.close()
    await slow.client.close()
    assert down.status == 502 and orjson.loads(down.body)["error"]["code"] == "PROXY_ERROR"
    assert late.status == 504 and orjson.loads(late.body)["error"]["code"] == "TIMEOUT"
