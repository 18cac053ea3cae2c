"""The cors plugin in process: config validation, origin matching, preflight decisions."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config, load_config_text
from hotpath.context import RequestContext
from hotpath.plugin import PluginSetup, ResponseHead, RouteInfo
from plugins.cors.plugin import CorsConfig, CorsPlugin, OriginPolicy
from tests.support.paths import BAD_CONFIGS
from tests.support.requests import make_ctx

BAD = BAD_CONFIGS
CONFIG = """
services: {backend: {urls: ["http://127.0.0.1:9"]}}
routes: [{name: r, path: /r, service: backend}]
"""


def plugin(**cfg: Any) -> CorsPlugin:
    runtime = new_runtime(load_config_text(CONFIG, "t.yaml", environ={}))
    route = RouteInfo(name="r", path="/r", service="backend", methods=())
    return CorsPlugin(msgspec.convert(cfg, CorsConfig), PluginSetup(route, None, runtime))


def ctx(method: str, **headers: str) -> RequestContext:
    hs = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return make_ctx(method, "/r", headers=hs)


def test_origin_patterns() -> None:
    policy = OriginPolicy(("https://a.example.com", "https://*.example.org", "http://*.local.test:8080"))
    assert policy.allows(b"https://a.example.com")
    assert policy.allows(b"HTTPS://A.EXAMPLE.COM")
    assert policy.allows(b"https://x.y.example.org")
    assert policy.allows(b"http://dev.local.test:8080")
    for refused in (b"https://example.org", b"https://x.example.org.evil.com", b"http://a.example.com",
                    b"https://a.example.com:444", b"http://dev.local.test", b"null", b"https://evil\xff.example.org"):
        assert not policy.allows(refused), refused


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"origins": ["*"], "credentials": True}, "cannot be combined with credentials"),
        ({"origins": ["https://a.example.com/path"]}, "is not an origin"),
        ({"origins": ["a.example.com"]}, "is not an origin"),
        ({"origins": ["https://a.*.example.com"]}, "is not an origin"),
        ({"methods": ["GET POST"]}, "valid HTTP token"),
        ({"headers": ["*", "x-a"]}, "already allows"),
        ({"max_age": -1}, ">= 0"),
    ],
)
def test_bad_configs_are_refused(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(cfg, CorsConfig)


def test_fixture_star_with_credentials_names_route_plugin_and_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(str(BAD / "cors" / "star_with_credentials.yaml"), environ={})
    assert err.value.path == "routes[0].plugins.cors"
    assert "origins: '*' cannot be combined with credentials" in err.value.message


def test_fixture_route_without_options_is_refused_at_build() -> None:
    loaded = load_config(str(BAD / "cors" / "route_without_options.yaml"), environ={})
    with pytest.raises(ConfigError) as err:
        build_gateway(loaded, new_runtime(loaded))
    assert err.value.path == "routes[0].plugins.cors"
    assert "add OPTIONS" in err.value.message


def test_fixture_cache_ttl_names_route_plugin_and_field() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(str(BAD / "cache" / "ttl_out_of_bounds.yaml"), environ={})
    assert err.value.path == "routes[1].plugins.cache.ttl"
    assert err.value.line == 14


async def test_preflight_allowed_and_refused() -> None:
    p = plugin(origins=["https://a.example.com"], methods=["GET", "PUT"], headers=["x-a"], max_age=5)
    ok = await p.on_request(ctx("OPTIONS", origin="https://a.example.com", access_control_request_method="PUT",
                                access_control_request_headers="X-A"))
    assert ok is not None and ok.status == 204
    got = dict(ok.headers)
    assert got[b"access-control-allow-origin"] == b"https://a.example.com"
    assert got[b"access-control-allow-methods"] == b"GET, PUT"
    assert got[b"access-control-max-age"] == b"5"
    refused = await p.on_request(ctx("OPTIONS", origin="https://a.example.com",
                                     access_control_request_method="DELETE"))
    assert refused is not None and b"access-control-allow-origin" not in dict(refused.headers)
    # OPTIONS without Access-Control-Request-Method is not a preflight: it goes upstream.
    assert await p.on_request(ctx("OPTIONS", origin="https://a.example.com")) is None


async def test_actual_request_headers_and_upstream_cors_headers_replaced() -> None:
    p = plugin(origins=["https://a.example.com"], credentials=True)
    c = ctx("GET", origin="https://a.example.com")
    assert await p.on_request(c) is None
    assert (b"access-control-allow-origin", b"https://a.example.com") in c.response_headers
    assert (b"vary", b"Origin") in c.response_headers
    head = ResponseHead(200, [(b"access-control-allow-origin", b"*"), (b"content-type", b"x"), *c.response_headers])
    await p.on_response(c, head)
    assert [v for k, v in head.headers if k == b"access-control-allow-origin"] == [b"https://a.example.com"]
    stranger = ctx("GET", origin="https://b.example.com")
    await p.on_request(stranger)
    assert stranger.response_headers == [(b"vary", b"Origin")]
