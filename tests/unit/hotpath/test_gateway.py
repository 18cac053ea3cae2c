"""The dispatcher: request checks, routing, the plugin chain's verdicts, errors, hooks.

Driven in process through ASGI, forwarding to a real scripted upstream over loopback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import orjson

from hotpath.audit import AuditType, Refusal
from hotpath.context import RequestContext
from hotpath.errors import CannedError, ErrorCode
from hotpath.plugin import CONTINUE, Plugin, Verdict
from tests.support.inprocess_gateway import CountingTelemetry, NoConfig, call, gateway, route, service, setup
from tests.support.scripted_peer import Handler, Peer, answer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TEAPOT = CannedError(418, ErrorCode.FORBIDDEN, "no coffee", [(b"x-brew", b"tea")])
WHY = Refusal(AuditType.FORBIDDEN, "teapot")


class Refuses(Plugin[NoConfig]):
    name: ClassVar[str] = "refuses"
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self) -> None:
        super().__init__(NoConfig(), setup())
        self.seen: list[RequestContext] = []
        self.logged: list[RequestContext] = []

    async def on_request(self, ctx: RequestContext) -> Verdict:
        self.seen.append(ctx)
        return TEAPOT.response(ctx.request_id, WHY)

    def on_log(self, ctx: RequestContext) -> None:
        self.logged.append(ctx)


class Fails(Plugin[NoConfig]):
    name: ClassVar[str] = "fails"
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self) -> None:
        super().__init__(NoConfig(), setup())
        self.logged = 0

    async def on_request(self, ctx: RequestContext) -> Verdict:
        raise RuntimeError("a fault, not a refusal")

    def on_log(self, ctx: RequestContext) -> None:
        self.logged += 1


class Adds(Plugin[NoConfig]):
    name: ClassVar[str] = "adds"
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self) -> None:
        super().__init__(NoConfig(), setup())

    async def on_request(self, ctx: RequestContext) -> Verdict:
        ctx.upstream_headers.append((b"x-added", b"1"))
        ctx.response_headers.append((b"x-seen", b"1"))
        return CONTINUE


def error_of(body: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(body)
    return decoded


async def test_a_routed_request_is_proxied_with_ids_both_ways(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK))
    svc = service(peer.url)
    gw = gateway([route(svc, plugins=[Adds()])])
    try:
        got = await call(gw, "GET", "/api/a/../b?q=1", [(b"x-request-id", b"abc-1"), (b"x-correlation-id", b"c9")])
    finally:
        await svc.client.close()
    assert (got.status, got.body) == (200, b"ok")
    assert got.header(b"x-request-id") == b"abc-1" and got.header(b"x-correlation-id") == b"c9"
    assert got.header(b"x-seen") == b"1"
    sent = peer.requests[0]
    assert sent.target == "/api/b?q=1"  # normalized before routing and forwarding
    assert sent.headers["x-request-id"] == "abc-1" and sent.headers["x-added"] == "1"


async def test_an_unsafe_request_id_is_replaced() -> None:
    gw = gateway([])
    got = await call(gw, "GET", "/x", [(b"x-request-id", b"bad id\x7f")])
    rid = got.header(b"x-request-id")
    assert rid is not None and rid != b"bad id\x7f" and len(rid) == 32
    assert error_of(got.body)["request_id"] == rid.decode()


async def test_request_line_and_header_limits() -> None:
    gw = gateway([], max_uri=300, max_header=1024)
    assert (await call(gw, "GET", "/" + "a" * 400)).status == 414
    assert (await call(gw, "GET", "/x?q=\u00e9")).status == 400
    assert (await call(gw, "GET", "/x", [(b"x-big", b"v" * 2000)])).status == 431


async def test_ambiguous_body_framing_is_refused_before_any_plugin(peer_factory: Callable[[Handler], Peer]) -> None:
    refuses = Refuses()
    svc = service(peer_factory(answer(OK)).url)
    gw = gateway([route(svc, plugins=[refuses])])
    for headers in ([(b"content-length", b"3"), (b"content-length", b"4")],
                    [(b"content-length", b"x")],
                    [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")]):
        got = await call(gw, "POST", "/api", headers, [b"abc"])
        assert got.status == 400 and error_of(got.body)["error"]["code"] == "BAD_REQUEST"
    assert refuses.seen == []
    await svc.client.close()


async def test_no_route_is_404_and_a_wrong_method_is_405() -> None:
    svc = service("http://127.0.0.1:9")
    gw = gateway([route(svc, methods=("GET", "HEAD"))])
    missing = await call(gw, "GET", "/elsewhere")
    assert missing.status == 404 and error_of(missing.body)["error"]["code"] == "NOT_FOUND"
    wrong = await call(gw, "DELETE", "/api/x")
    assert wrong.status == 405 and wrong.header(b"allow") == b"GET, HEAD"
    assert error_of(wrong.body)["error"]["details"] == {"allowed": ["GET", "HEAD"]}


async def test_answers_that_match_no_route_carry_the_unrouted_headers() -> None:
    svc = service("http://127.0.0.1:9")
    extra = [(b"x-frame-options", b"DENY")]
    gw = gateway([route(svc, methods=("GET",), plugins=[Refuses()])], unrouted=extra)
    for method, target, status in (("GET", "/elsewhere", 404), ("POST", "/api", 405), ("GET", "/a%2fb", 400)):
        got = await call(gw, method, target)
        assert got.status == status and got.header(b"x-frame-options") == b"DENY", target
    # A routed answer is the route's plugins' business: the unrouted headers stay off it.
    routed = await call(gw, "GET", "/api")
    assert routed.status == 418 and routed.header(b"x-frame-options") is None


async def test_unsafe_paths_are_refused() -> None:
    gw = gateway([])
    for path in ("/api/%2e%2e%2f%2e%2e/etc", "/a%2fb", "/a/%00"):
        got = await call(gw, "GET", path)
        assert got.status == 400, path


async def test_a_verdict_answers_and_stops_the_chain(peer_factory: Callable[[Handler], Peer]) -> None:
    peer = peer_factory(answer(OK))
    svc = service(peer.url)
    refuses = Refuses()
    telemetry = CountingTelemetry()
    gw = gateway([route(svc, plugins=[refuses])], telemetry)
    got = await call(gw, "GET", "/api/x", [(b"x-correlation-id", b"c1")])
    await svc.client.close()
    assert got.status == 418 and got.header(b"x-brew") == b"tea"
    assert got.header(b"content-length") == str(len(got.body)).encode()
    assert got.header(b"x-correlation-id") == b"c1" and got.header(b"x-request-id") is not None
    assert error_of(got.body)["error"] == {"code": "FORBIDDEN", "message": "no coffee"}
    assert peer.requests == []  # the upstream never saw it
    # The refusal is on the context for the log phase (the audit plugin reads it there).
    assert refuses.logged[0].refusal is WHY and refuses.logged[0].status == 418
    assert len(telemetry.started) == len(telemetry.finished) == 1


async def test_head_gets_the_headers_of_the_answer_without_its_body() -> None:
    svc = service("http://127.0.0.1:9")
    gw = gateway([route(svc, plugins=[Refuses()])])
    got = await call(gw, "HEAD", "/api")
    assert got.status == 418 and got.body == b""
    assert got.header(b"content-length") is None or got.header(b"content-length") == b"0"


async def test_a_plugin_fault_is_a_500_and_the_log_phase_still_runs() -> None:
    svc = service("http://127.0.0.1:9")
    fails = Fails()
    telemetry = CountingTelemetry()
    gw = gateway([route(svc, plugins=[fails])], telemetry)
    got = await call(gw, "GET", "/api")
    assert got.status == 500 and error_of(got.body)["error"]["code"] == "INTERNAL_ERROR"
    assert fails.logged == 1
    assert len(telemetry.started) == len(telemetry.finished) == 1


async def test_telemetry_sees_unrouted_requests_once() -> None:
    telemetry = CountingTelemetry()
    gw = gateway([], telemetry)
    await call(gw, "GET", "/nowhere")
    await call(gw, "GET", "/" + "a" * 9000)
    assert len(telemetry.started) == len(telemetry.finished) == 2
    assert [c.status for c in telemetry.finished] == [404, 414]
