"""The signed_url plugin in process: configuration errors, verifying routes, and issuing
routes that build the path from the route template's parameters."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config_text
from hotpath.context import Identity, RouteInfo
from hotpath.responses import LocalResponse
from plugins.signed_url import SignedUrlPlugin
from plugins.signed_url.admin import NotConfigured, sign
from plugins.signed_url.config import SignedUrlSettings
from tests.support.inprocess_gateway import setup as plain_setup
from tests.support.requests import make_ctx

KEY = "k" * 32
SETTINGS: dict[str, Any] = {"keys": [{"id": "k1", "secret": KEY}]}


def text(route_plugin: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    return orjson.dumps({
        "services": {"b": {"urls": ["http://127.0.0.1:9"]}},
        "plugins": {"signed_url": settings if settings is not None else SETTINGS},
        "routes": [{"name": "r", "path": "/r", "service": "b", "plugins": {"signed_url": route_plugin}}],
    }).decode()


def plugin(route_plugin: dict[str, Any], path: str = "/r") -> SignedUrlPlugin:
    """Built as the gateway builds it, on a route with this path (templates come from the
    router, so a templated route is set up by hand)."""
    import msgspec

    from hotpath.plugin import PluginSetup
    from plugins.signed_url.config import SignedUrlConfig

    config = msgspec.convert(route_plugin, SignedUrlConfig)
    settings = msgspec.convert(SETTINGS, SignedUrlSettings)
    built = SignedUrlPlugin(config, PluginSetup(RouteInfo("r", path, "b"), settings, plain_setup().runtime))
    built.check()
    return built


@pytest.mark.parametrize(
    ("route_plugin", "settings", "path", "words"),
    [
        ({}, {"keys": [{"id": "k1", "secret": "short"}]}, "plugins.signed_url.keys[0]", "at least 32 bytes"),
        ({}, {"keys": [{"id": "k1", "secret": KEY}, {"id": "k1", "secret": KEY}]}, "plugins.signed_url",
         "id 'k1' is used twice"),
        ({}, {"keys": [{"id": "k1", "secret": KEY, "verify_only": True}], "sign_with": "k1"}, "plugins.signed_url",
         "is verify_only"),
        ({"mode": "issue"}, SETTINGS, "routes[0].plugins.signed_url", "mode issue needs target"),
        ({"target": "/f"}, SETTINGS, "routes[0].plugins.signed_url", "belong to mode issue"),
        ({"mode": "issue", "target": "f"}, SETTINGS, "routes[0].plugins.signed_url", "starting with '/'"),
        ({}, {}, "routes[0].plugins.signed_url", "keys is empty"),
        ({"mode": "issue", "target": "/f", "ttl": 9_000_000}, SETTINGS, "routes[0].plugins.signed_url",
         "exceeds plugins.signed_url.max_ttl"),
        ({"mode": "issue", "target": "/f/{id}"}, SETTINGS, "routes[0].plugins.signed_url",
         "target names {id}, which is not a parameter"),
        ({"mode": "issue", "target": "/f"}, {"keys": [{"id": "k1", "secret": KEY, "verify_only": True}]},
         "routes[0].plugins.signed_url", "every key of plugins.signed_url is verify_only"),
    ],
)
def test_bad_settings_stop_startup_naming_the_field(
    route_plugin: dict[str, Any], settings: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        loaded = load_config_text(text(route_plugin, settings), "inline.yaml", environ={})
        build_gateway(loaded, new_runtime(loaded))
    assert info.value.path.startswith(path), info.value
    assert words in info.value.message


def test_the_target_is_a_template_like_a_routes() -> None:
    for bad, words in (("/f/x{id}", "a whole segment"), ("/f/{id", "a whole segment"), ("/f/{1d}", "not a parameter"),
                       ("/f/{id}/{id}", "appears twice")):
        with pytest.raises(ConfigError) as info:
            loaded = load_config_text(text({"mode": "issue", "target": bad}), "inline.yaml", environ={})
            build_gateway(loaded, new_runtime(loaded))
        assert info.value.message.startswith("target: ") and words in info.value.message, info.value
    # Its parameters must be the route's (a template route: same names, any type).
    plugin({"mode": "issue", "target": "/files/{job}/{name}"}, path="/api/{job:int}/files/{name:[a-z.]+}/link")
    with pytest.raises(ValueError, match=r"target names \{name\}.*parameters: job"):
        plugin({"mode": "issue", "target": "/files/{job}/{name}"}, path="/api/{job:int}/link")


async def test_issue_and_verify() -> None:
    issuer = plugin({"mode": "issue", "target": "/files/jobs/{id}/out.mp4", "ttl": 600,
                     "base_url": "https://files.example.com/"}, path="/api/v1/jobs/{id}/download")
    ctx = make_ctx("GET", "/api/v1/jobs/42/download")
    ctx.identity = Identity("alice", "free")
    ctx.path_params = {"id": "42"}
    answer = await issuer.on_request(ctx)
    assert isinstance(answer, LocalResponse) and answer.status == 200
    assert dict(answer.headers)[b"cache-control"] == b"no-store"
    body = orjson.loads(answer.body)
    assert body["url"].startswith("https://files.example.com/files/jobs/42/out.mp4?exp=")
    assert body["method"] == "GET" and isinstance(body["expires_at"], int)

    verifier = plugin({})
    path, _, query = body["url"].removeprefix("https://files.example.com").partition("?")
    good = make_ctx("GET", path, query=query.encode())
    assert await verifier.on_request(good) is None
    assert good.query == b"" and good.outcome("signed_url") == "valid"  # the signature stays at the gateway
    changed = make_ctx("GET", path.replace("42", "43"), query=query.encode())
    refused = await verifier.on_request(changed)
    assert isinstance(refused, LocalResponse) and refused.status == 403
    assert orjson.loads(refused.body)["error"]["message"] == "the URL signature is invalid or expired"
    assert refused.refusal is not None and refused.refusal.reason == "signed_url_bad_signature"

    # Values are path text as the request had it, escapes included.
    ctx.path_params = {"id": "a%20b"}
    spaced = await issuer.on_request(ctx)
    assert isinstance(spaced, LocalResponse) and "/jobs/a%20b/out.mp4?" in orjson.loads(spaced.body)["url"]
    # A value never moves the signed path out of where the target puts it.
    for value in ("..", "%2e%2E", ".", "", "a/b", "a%2Fb", "a\\b"):
        ctx.path_params = {"id": value}
        refused_value = await issuer.on_request(ctx)
        assert isinstance(refused_value, LocalResponse) and refused_value.status == 400, value

    typed = plugin({"mode": "issue", "target": "/files/jobs/{id:int}/out.mp4"}, path="/api/v1/jobs/{id}/download")
    ctx.path_params = {"id": "abc"}
    not_a_number = await typed.on_request(ctx)
    assert isinstance(not_a_number, LocalResponse) and not_a_number.status == 400

    anonymous = make_ctx("GET", "/api/v1/jobs/42/download")
    anonymous.path_params = {"id": "42"}
    refused_anon = await issuer.on_request(anonymous)
    assert isinstance(refused_anon, LocalResponse) and refused_anon.status == 401


async def test_a_subject_bound_url_needs_the_same_caller() -> None:
    issuer = plugin({"mode": "issue", "target": "/files/x", "bind": "subject"})
    verifier = plugin({"bind": "subject", "forward_signature": True})
    ctx = make_ctx("GET", "/r")
    ctx.identity = Identity("alice", "free")
    answer = await issuer.on_request(ctx)
    assert isinstance(answer, LocalResponse)
    path, _, query = orjson.loads(answer.body)["url"].partition("?")
    for who, expected in (("alice", None), ("bob", 403), (None, 403)):
        c = make_ctx("GET", path, query=query.encode())
        c.identity = Identity(who, "free") if who else None
        verdict = await verifier.on_request(c)
        assert (verdict.status if isinstance(verdict, LocalResponse) else None) == expected, who
        if expected is None:
            assert c.query == query.encode()  # forward_signature: passed on as sent


def test_the_admin_operation() -> None:
    import msgspec

    settings = msgspec.convert(SETTINGS, SignedUrlSettings)
    signed = sign(settings, {"path": "/files/a.pdf?dl=1", "ttl": 120, "ip": "10.0.0.1"})
    assert signed["url"].startswith("/files/a.pdf?dl=1&exp=") and signed["key_id"] == "k1"
    with pytest.raises(ValueError, match="not both"):
        sign(settings, {"path": "/f", "ip": "10.0.0.1", "subject": "a"})
    with pytest.raises(ValueError):
        sign(settings, {"path": "/f", "color": "red"})
    with pytest.raises(NotConfigured):
        sign(SignedUrlSettings(), {"path": "/f"})
