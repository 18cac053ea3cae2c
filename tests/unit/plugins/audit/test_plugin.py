"""The audit plugin: which refusals a route records, request events on sensitive routes,
the body digest, and when it is on by default."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable

import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config_text
from hotpath.audit import AuditEvent, AuditSink, AuditType
from hotpath.gateway import Gateway
from plugins.audit import AuditPlugin
from tests.support.inprocess_gateway import call
from tests.support.scripted_peer import Handler, Peer, answer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SECRET = "s" * 32


class Sink(AuditSink):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


OPEN: list[Gateway] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Pooled upstream connections are closed in the test that opened them."""
    yield
    while OPEN:
        for route in OPEN.pop().table.routes:
            await route.service.client.close()


def build(url: str, routes: str, sink: AuditSink | None) -> Gateway:
    text = f"""
services: {{backend: {{urls: ["{url}"]}}}}
plugins:
  auth: {{providers: {{main: {{algorithms: [HS256], secret: "{SECRET}"}}}}}}
routes:
{routes}
"""
    loaded = load_config_text(text, "t.yaml", environ={})
    runtime = new_runtime(loaded) if sink is None else new_runtime(loaded, audit=sink)
    gateway, _ = build_gateway(loaded, runtime)
    OPEN.append(gateway)
    return gateway


PROTECTED = "  - {name: api, path: /api, service: backend, plugins: {auth: {}%s}}"


def plugins_of(gw: Gateway, name: str) -> list[str]:
    route = next(r for r in gw.table.routes if r.name == name)
    return [p.name for p in route.chain.plugins]


async def test_refusals_are_recorded_when_a_sink_is_configured(peer_factory: Callable[[Handler], Peer]) -> None:
    sink = Sink()
    gw = build(peer_factory(answer(OK)).url, PROTECTED % "", sink)
    assert plugins_of(gw, "api") == ["audit", "auth"]  # on by default once events have somewhere to go
    got = await call(gw, "GET", "/api", [(b"x-correlation-id", b"c1")])
    assert got.status == 401
    [event] = sink.events
    assert (event.type, event.reason, event.route, event.correlation_id) == (
        AuditType.AUTH_FAILURE, "missing_token", "api", "c1")
    assert event.details == {"provider": "main"}


async def test_without_a_sink_no_route_pays_for_audit(peer_factory: Callable[[Handler], Peer]) -> None:
    gw = build(peer_factory(answer(OK)).url, PROTECTED % "", None)
    assert plugins_of(gw, "api") == ["auth"]


async def test_a_route_chooses_its_refusals_or_switches_audit_off(peer_factory: Callable[[Handler], Peer]) -> None:
    url = peer_factory(answer(OK)).url
    sink = Sink()
    routes = "\n".join([
        PROTECTED % ", audit: {events: [forbidden]}",
        "  - {name: quiet, path: /quiet, service: backend, plugins: {auth: {}, audit: false}}",
    ])
    gw = build(url, routes, sink)
    assert plugins_of(gw, "quiet") == ["auth"]
    assert (await call(gw, "GET", "/api")).status == 401
    assert (await call(gw, "GET", "/quiet")).status == 401
    assert sink.events == []  # auth failures were not asked for, and /quiet records nothing


async def test_a_sensitive_route_records_every_request_with_its_body_digest(
    peer_factory: Callable[[Handler], Peer],
) -> None:
    sink = Sink()
    routes = "  - {name: admin, path: /admin, service: backend, plugins: {audit: {requests: true, body_digest: true}}}"
    gw = build(peer_factory(answer(OK)).url, routes, sink)
    body = b'{"grant": "everything"}'
    got = await call(gw, "POST", "/admin/users", [(b"content-length", str(len(body)).encode())], [body])
    assert got.status == 200
    [event] = sink.events
    assert event.type is AuditType.REQUEST
    assert event.details == {"method": "POST", "path": "/admin/users", "status": 200, "bytes_in": len(body),
                             "body_sha256": hashlib.sha256(body).hexdigest()}
    assert b"everything" not in repr(event).encode()  # a digest, never the body


def test_a_digest_needs_request_events_and_types_must_be_known() -> None:
    for plugin, words in (("{body_digest: true}", "body_digest needs requests"),
                          ("{events: [nope]}", "unknown refusal type 'nope'")):
        with pytest.raises(ConfigError) as info:
            build("http://127.0.0.1:9", f"  - {{name: a, path: /a, service: backend, plugins: {{audit: {plugin}}}}}",
                  Sink())
        assert info.value.path.startswith("routes[0].plugins.audit") and words in str(info.value)


def test_only_a_digesting_route_runs_the_request_phase() -> None:
    gw = build("http://127.0.0.1:9", "\n".join([
        "  - {name: a, path: /a, service: backend, plugins: {audit: {}}}",
        "  - {name: b, path: /b, service: backend, plugins: {audit: {requests: true, body_digest: true}}}",
    ]), Sink())
    hooks = {r.name: len(r.chain.request) for r in gw.table.routes}
    assert hooks == {"a": 0, "b": 1}
    assert all(isinstance(r.chain.plugins[0], AuditPlugin) for r in gw.table.routes)


VALIDATED = ("  - {name: search, path: /search, service: backend, plugins: {validate: {body: {type: object, "
             "required: [q], properties: {q: {type: string}}}}%s}}")


async def test_validation_refusals_are_recorded(peer_factory: Callable[[Handler], Peer]) -> None:
    sink = Sink()
    gw = build(peer_factory(answer(OK)).url, VALIDATED % "", sink)
    body = b'{"x": 1}'
    got = await call(gw, "POST", "/search", [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(body)).encode())], [body])
    assert got.status == 400
    [event] = sink.events
    assert (event.type, event.reason, event.route) == (AuditType.VALIDATION_FAILED, "schema", "search")


async def test_a_body_the_validator_read_is_digested_as_forwarded(peer_factory: Callable[[Handler], Peer]) -> None:
    sink = Sink()
    gw = build(peer_factory(answer(OK)).url, VALIDATED % ", audit: {requests: true, body_digest: true}", sink)
    body = b'{"q": "rain"}'
    got = await call(gw, "POST", "/search", [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(body)).encode())], [body])
    assert got.status == 200
    [event] = sink.events
    assert event.details is not None and event.details["body_sha256"] == hashlib.sha256(body).hexdigest()
