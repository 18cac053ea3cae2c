"""The forward_auth plugin in process, against a real (threaded) authorization service:
configuration errors, the description, answers and their memory, single-flight without
Redis, and the failure modes. Sharing through Redis is tested in
tests/integration/test_forward_auth.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config_text
from hotpath.context import Identity
from hotpath.responses import LocalResponse
from hotpath.runtime import WorkerRuntime
from plugins.forward_auth import ForwardAuthPlugin
from plugins.forward_auth.answers import Answer, Answers, decode, encode
from tests.support.authz_server import AuthzServer
from tests.support.requests import make_ctx


@pytest.fixture
def authz() -> Iterator[AuthzServer]:
    server = AuthzServer()
    yield server
    server.stop()


def config(authz: AuthzServer, **route: Any) -> str:
    forward = {"url": authz.url("/admins"), "response_headers": ["x-admin-id"], **route}
    return orjson.dumps({
        "services": {"b": {"urls": ["http://127.0.0.1:9"]}},
        "routes": [{"name": "admin", "path": "/admin", "service": "b", "plugins": {"forward_auth": forward}}],
    }).decode()


def build(text: str) -> tuple[ForwardAuthPlugin, WorkerRuntime]:
    loaded = load_config_text(text, "inline.yaml", environ={})
    runtime = new_runtime(loaded)
    gateway, _ = build_gateway(loaded, runtime)
    plugin = gateway.table.routes[0].chain.plugins[0]
    assert isinstance(plugin, ForwardAuthPlugin)
    return plugin, runtime


def ctx(subject: str | None = "alice", path: str = "/admin/x", **headers: str) -> Any:
    c = make_ctx("POST", path, query=b"a=1", headers=[(k.encode(), v.encode()) for k, v in headers.items()])
    if subject is not None:
        c.identity = Identity(subject, "pro", frozenset({"b", "a"}), frozenset({"s"}))
    return c


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ({"url": "ftp://authz/x"}, "is not an http(s) URL"),
        ({"url": "http://authz/x?y=1"}, "without query"),
        ({"headers": ["content-length"]}, "'content-length' is framing"),
        ({"response_headers": ["x-a", "x-a"]}, "lists a header twice"),
        ({"send": ["method", "method"]}, "lists a value twice"),
        ({"timeout": 0}, "Expected `float` > 0.0"),
        ({"failure": "maybe"}, "Invalid enum value 'maybe'"),
    ],
)
def test_bad_settings_stop_startup_naming_the_field(authz: AuthzServer, route: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(config(authz, **route), "inline.yaml", environ={})
    assert info.value.path.startswith("routes[0].plugins.forward_auth"), info.value
    assert words in info.value.message


def test_the_description_holds_what_the_route_sends(authz: AuthzServer) -> None:
    plugin, _ = build(config(authz, headers=["x-tenant-id", "x-absent"]))
    c = ctx(**{"x-tenant-id": "t1"})
    c.path_params = {"tenant": "t1"}
    assert orjson.loads(plugin.describe(c)) == {
        "route": "admin", "method": "POST", "path": "/admin/x", "path_params": {"tenant": "t1"},
        "headers": {"x-tenant-id": "t1", "x-absent": None},
        "identity": {"subject": "alice", "tier": "pro", "roles": ["a", "b"], "scopes": ["s"], "credential": "bearer"},
    }
    narrow, _ = build(config(authz, send=["query"]))
    assert orjson.loads(narrow.describe(ctx(None))) == {"route": "admin", "query": "a=1"}
    assert orjson.loads(narrow.describe(ctx("bob"))) == {"route": "admin", "query": "a=1"}
    # Answers owned: a client never sends them upstream.
    assert plugin.owned_headers() == ("x-admin-id",)


def test_answers_expire_are_bounded_and_survive_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.forward_auth import answers as module

    clock = [1000.0]
    monkeypatch.setattr(module, "now", lambda: clock[0])
    kept = Answers(2)
    kept.put(b"a", Answer(200, [(b"x-admin-id", b"alice")], 1010.0))
    kept.put(b"stale", Answer(200, [], 999.0))  # already expired: not kept
    assert len(kept) == 1
    kept.put(b"b", Answer(403, [], 1010.0))
    kept.put(b"c", Answer(403, [], 1010.0))
    assert kept.get(b"a") is None and kept.get(b"b") is not None  # oldest went first
    clock[0] = 1010.0
    assert kept.get(b"b") is None
    answer = decode(encode(Answer(200, [(b"x-admin-id", b"al\xe9")], 1234.5)))
    assert answer is not None and (answer.status, answer.headers, answer.expires) == (200, [(b"x-admin-id", b"al\xe9")],
                                                                                         1234.5)
    assert decode(b"not json") is None and decode(b'{"s": 200}') is None


async def test_allow_deny_and_one_call_for_concurrent_requests(authz: AuthzServer) -> None:
    plugin, runtime = build(config(authz))
    await runtime.start()
    try:
        authz.delay = 0.2
        contexts = [ctx() for _ in range(20)]
        verdicts = await asyncio.gather(*(plugin.on_request(c) for c in contexts))
        assert verdicts == [None] * 20
        assert all((b"x-admin-id", b"alice") in c.upstream_headers for c in contexts)
        assert all(c.outcome("forward_auth") == "allowed" for c in contexts)
        assert len(authz.calls_to("/admins")) == 1
        authz.delay = 0.0
        again = ctx()
        assert await plugin.on_request(again) is None and len(authz.calls_to("/admins")) == 1  # remembered
        denied = await plugin.on_request(ctx("bob"))
        assert isinstance(denied, LocalResponse) and denied.status == 403
        assert denied.refusal is not None and denied.refusal.reason == "forward_auth_denied"
        anonymous = await plugin.on_request(ctx(None))
        assert isinstance(anonymous, LocalResponse) and anonymous.status == 401
    finally:
        await runtime.stop()


@pytest.mark.parametrize(("failure", "status"), [("closed", 503), ("open", None)])
async def test_errors_and_timeouts_fail_as_configured(authz: AuthzServer, failure: str, status: int | None) -> None:
    for path, route in (("/error", {}), ("/slow", {"timeout": 0.2})):
        plugin, runtime = build(config(authz, url=authz.url(path), failure=failure, **route))
        await runtime.start()
        try:
            c = ctx()
            verdict = await plugin.on_request(c)
        finally:
            await runtime.stop()
        if status is None:
            assert verdict is None and c.upstream_headers == [] and c.outcome("forward_auth") == "failed_open"
        else:
            assert isinstance(verdict, LocalResponse) and verdict.status == status
            assert b"SERVICE_UNAVAILABLE" in verdict.body and c.outcome("forward_auth") == "failed_closed"
