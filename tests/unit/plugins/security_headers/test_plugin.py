"""The security_headers plugin: compiled headers, config errors, and who wins a clash."""

from __future__ import annotations

import msgspec
import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config_text
from hotpath.responses import ResponseHead
from plugins.security_headers.config import SecurityHeadersConfig
from plugins.security_headers.plugin import SecurityHeadersPlugin, compile_headers
from tests.support.inprocess_gateway import setup
from tests.support.requests import make_ctx

DEFAULTS = [
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


def plugin(**config: object) -> SecurityHeadersPlugin:
    return SecurityHeadersPlugin(msgspec.convert(config, SecurityHeadersConfig), setup())


def test_the_defaults_fit_an_api() -> None:
    assert compile_headers(SecurityHeadersConfig()) == DEFAULTS


def test_each_header_can_be_shaped_or_left_out() -> None:
    cfg = msgspec.convert({
        "hsts": {"max_age": 63072000, "preload": True}, "content_type_options": False,
        "frame_options": "SAMEORIGIN", "referrer_policy": False, "content_security_policy": "default-src 'self'",
        "csp_report_only": True, "extra": {"permissions-policy": "camera=()"},
    }, SecurityHeadersConfig)
    assert compile_headers(cfg) == [
        (b"strict-transport-security", b"max-age=63072000; includeSubDomains; preload"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"content-security-policy-report-only", b"default-src 'self'"),
        (b"permissions-policy", b"camera=()"),
    ]
    off = plugin(hsts=False, content_type_options=False, frame_options=False, referrer_policy=False,
                 content_security_policy=False)
    assert not off.uses("on_request") and not off.uses("on_response")


@pytest.mark.parametrize(
    ("fragment", "words"),
    [
        ("{frame_options: true}", "frame_options: give a value"),
        ("{frame_options: ALLOWALL}", "Invalid"),
        ("{extra: {content-length: '5'}}", "'content-length' cannot be set here"),
        ("{extra: {x-frame-options: DENY}}", "'x-frame-options' cannot be set here"),
        ("{hsts: {preload: true, max_age: 600}}", "preload needs"),
        ("{content_security_policy: \"a\\nb\"}", "Expected `str` matching"),
    ],
)
def test_bad_settings_stop_startup_naming_the_field(fragment: str, words: str) -> None:
    text = f"""
services: {{b: {{urls: ["http://127.0.0.1:9"]}}}}
routes:
  - {{name: r, path: /r, service: b, plugins: {{security_headers: {fragment}}}}}
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "inline.yaml", environ={})
    assert info.value.path.startswith("routes[0].plugins.security_headers"), info.value
    assert words in info.value.message


async def test_the_request_phase_adds_them_to_every_answer() -> None:
    p = plugin()
    ctx = make_ctx()
    assert await p.on_request(ctx) is None
    assert ctx.response_headers == DEFAULTS


async def test_the_upstream_keeps_its_own_value_unless_told_otherwise() -> None:
    upstream = [(b"content-type", b"text/html"), (b"content-security-policy", b"default-src 'self'")]
    keep = plugin()
    head = ResponseHead(200, [*upstream, *DEFAULTS])
    await keep.on_response(make_ctx(), head)
    assert head.headers == [*upstream, *(h for h in DEFAULTS if h[0] != b"content-security-policy")]

    replace = plugin(override=True)
    head = ResponseHead(200, [*upstream, *DEFAULTS])
    await replace.on_response(make_ctx(), head)
    assert head.headers == [(b"content-type", b"text/html"), *DEFAULTS]


async def test_without_a_clash_the_headers_are_left_alone() -> None:
    p = plugin()
    headers = [(b"content-type", b"application/json"), *DEFAULTS]
    head = ResponseHead(200, headers)
    await p.on_response(make_ctx(), head)
    assert head.headers is headers
    # The same value from both sides is sent once either way.
    for override in (False, True):
        head = ResponseHead(200, [(b"x-frame-options", b"DENY"), *DEFAULTS])
        await plugin(override=override).on_response(make_ctx(), head)
        assert sorted(head.headers) == sorted(DEFAULTS)


def test_default_plugins_give_unrouted_answers_the_headers() -> None:
    text = """
services: {b: {urls: ["http://127.0.0.1:9"]}}
default_plugins:
  security_headers: {frame_options: SAMEORIGIN}
routes:
  - {name: r, path: /r, service: b}
"""
    loaded = load_config_text(text, "inline.yaml", environ={})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    assert (b"x-frame-options", b"SAMEORIGIN") in gateway._unrouted
    assert [p.name for p in gateway.table.routes[0].chain.plugins] == ["security_headers"]
