"""ROUTES_ENABLED, ROUTES_DISABLED and SERVICE_ENDPOINT_OVERRIDES: parsing, precedence, and
errors that name the variable."""

from __future__ import annotations

import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import LoadedConfig, load_config_text
from tests.support.inprocess_gateway import call

CONFIG = """
services:
  users: {urls: ["http://127.0.0.1:9"]}
  order-service: {urls: ["http://127.0.0.1:9"]}
routes:
  - {name: api, path: /api, service: users}
  - {name: admin, path: /api/admin, service: users}
  - {name: orders, path: /orders, service: order-service}
"""


def load(**env: str) -> LoadedConfig:
    return load_config_text(CONFIG, "inline.yaml", environ=env)


def test_without_the_variables_nothing_changes() -> None:
    loaded = load()
    assert loaded.env.disabled_routes == {} and loaded.env.service_urls == {}


def test_routes_enabled_is_an_allow_list_and_disabled_wins() -> None:
    assert load(ROUTES_ENABLED="api, orders").env.disabled_routes == {"admin": "ROUTES_ENABLED"}
    assert load(ROUTES_DISABLED="admin").env.disabled_routes == {"admin": "ROUTES_DISABLED"}
    both = load(ROUTES_ENABLED="api,admin", ROUTES_DISABLED="admin")
    assert both.env.disabled_routes == {"admin": "ROUTES_DISABLED", "orders": "ROUTES_ENABLED"}
    assert load(ROUTES_ENABLED=" , ").env.disabled_routes == {}  # empty: unset


@pytest.mark.parametrize("variable", ["ROUTES_ENABLED", "ROUTES_DISABLED"])
def test_an_unknown_route_name_is_an_error_naming_the_variable(variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**{variable: "api,admn"})
    assert str(info.value).startswith(f"${variable}: routes: unknown route 'admn'")
    assert "api, admin, orders" in info.value.message


def test_endpoint_overrides_win_over_the_file_and_the_service_variable() -> None:
    loaded = load(
        USERS_SERVICE_URL="http://users-a:80",
        ORDER_SERVICE_SERVICE_URL="http://orders-a:80",
        SERVICE_ENDPOINT_OVERRIDES="users=http://canary:8080, users=http://canary-2:8080",
    )
    assert loaded.services["users"].urls == ("http://canary:8080", "http://canary-2:8080")
    assert loaded.services["order-service"].urls == ("http://orders-a:80",)
    assert loaded.env.service_urls == {"users": "SERVICE_ENDPOINT_OVERRIDES",
                                       "order-service": "ORDER_SERVICE_SERVICE_URL"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("payments=http://p:80", "unknown service 'payments' (services: order-service, users)"),
        ("users", "'users' is not a name=url pair"),
        ("users=", "'users=' is not a name=url pair"),
        ("users=ftp://x", "'ftp://x' is not an http(s) URL"),
        ("users=http://x:80/?q=1", "carry no query"),
    ],
)
def test_bad_overrides_name_the_variable(value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(SERVICE_ENDPOINT_OVERRIDES=value)
    assert str(info.value).startswith("$SERVICE_ENDPOINT_OVERRIDES: services")
    assert words in info.value.message


async def test_a_disabled_route_answers_404_and_never_falls_back_to_a_shorter_prefix() -> None:
    loaded = load(ROUTES_DISABLED="admin")
    gateway, services = build_gateway(loaded, new_runtime(loaded))
    try:
        got = await call(gateway, "GET", "/api/admin/users")
        assert got.status == 404
        assert b'"code":"NOT_FOUND"' in got.body and b"no route matches this path" in got.body
    finally:
        for svc in services.values():
            await svc.client.close()
    names = {r.name: [p.name for p in r.chain.plugins] for r in gateway.table.routes}
    assert names["admin"] == ["disabled"] and names["api"] == []


def test_what_a_disabled_routes_plugins_own_stays_owned() -> None:
    from controlplane.build import owned_headers

    text = CONFIG.replace("{name: admin, path: /api/admin, service: users}",
                          "{name: admin, path: /api/admin, service: users, plugins: {forward_auth: "
                          "{url: 'http://authz:9/check', response_headers: [x-admin-id]}}}")
    loaded = load_config_text(text, "inline.yaml", environ={"ROUTES_DISABLED": "admin"})
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    assert "x-admin-id" in owned_headers(loaded, gateway.table)
