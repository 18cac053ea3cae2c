"""Config loading: every bad file stops with a message naming file, line, path and field."""

from __future__ import annotations

import pytest

from controlplane.config.errors import ConfigError
from controlplane.config.loader import env_name_for_service, load_config, load_config_text
from tests.support.paths import BAD_CONFIGS, REPO

BAD = BAD_CONFIGS

# file -> (expected path, text in the message, expected line)
CASES = {
    "unknown_key.yaml": ("routes[0].strip_prefx", "unknown key", 7),
    "bad_type.yaml": ("services.users.timeouts.connect", "Expected `float`", 5),
    "unknown_service.yaml": ("routes[0].service", "unknown service 'order'", 4),
    "bad_url.yaml": ("services.users.urls[0]", "not an http(s) URL", 2),
    "out_of_bounds.yaml": ("server.workers", ">= 1", 2),
    "reserved_path.yaml": ("routes[0].path", "reserved", 4),
    "unnormalized_path.yaml": ("routes[0].path", "normalized", 4),
    "duplicate_route.yaml": ("routes[1].name", "duplicate route name", 5),
    "unknown_plugin.yaml": ("routes[0].plugins.rate_limt", "unknown plugin", 8),
    "missing_env.yaml": ("redis.url", "GATEHOUSE_TEST_UNSET_VARIABLE", 2),
    "bad_method.yaml": ("routes[0].methods[0]", "upper-case", 4),
    "bad_trusted_proxy.yaml": ("server.trusted_proxies[0]", "CIDR", 2),
    # An entry of a mapping keyed by user-chosen names is named, not shown as [...].
    "mapping_entry.yaml": ("plugins.rate_limit.policies.p1.tiers.gold.per_second", ">= 1", 11),
    # Both routes are named, the first with its file and line.
    "template_conflict.yaml": ("routes[1].path", "'job-stream' conflicts with route 'job-by-id' (routes[0].path, ", 9),
    "bad_template.yaml": ("routes[0].path", "not a valid path template", 5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_located(name: str) -> None:
    path, text, line = CASES[name]
    with pytest.raises(ConfigError) as info:
        load_config(str(BAD / name), environ={})
    err = info.value
    assert err.file == str(BAD / name)
    assert err.path == path
    assert text in err.message
    assert err.line == line
    assert str(err).startswith(f"{BAD / name}:{line}: {path}: ")


def test_every_fixture_has_a_case() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} - {"not_yaml.yaml"} == set(CASES)


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(BAD / "not_yaml.yaml"), environ={})
    assert "not valid YAML" in info.value.message
    assert info.value.line is not None


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/gatehouse.yaml", environ={})
    assert "cannot read" in info.value.message


BASE = """
server: {port: 8080}
services:
  users: {urls: ["http://a:1"]}
  order-service: {urls: ["http://b:1"]}
routes:
  - {name: users, path: /users, service: users}
"""


def test_environment_overrides_the_file() -> None:
    env = {
        "GATEHOUSE_PORT": "9090",
        "GATEHOUSE_WORKERS": "4",
        "REDIS_URL": "redis://r:6379/0",
        "USERS_SERVICE_URL": "http://x:1, http://y:2",
        "ORDER_SERVICE_SERVICE_URL": "http://z:3",
    }
    loaded = load_config_text(BASE, "inline.yaml", environ=env)
    assert loaded.gateway.server.port == 9090
    assert loaded.gateway.server.workers == 4
    assert loaded.gateway.redis.url == "redis://r:6379/0"
    assert loaded.state_backend == "redis"
    assert loaded.services["users"].urls == ("http://x:1", "http://y:2")
    assert loaded.services["order-service"].urls == ("http://z:3",)
    assert env_name_for_service("order-service") == "ORDER_SERVICE_SERVICE_URL"


def test_overrides_beat_environment() -> None:
    loaded = load_config_text(BASE, "inline.yaml", environ={"GATEHOUSE_PORT": "9090"},
                              overrides={"server.port": 7000})
    assert loaded.gateway.server.port == 7000


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(BASE, "inline.yaml", environ={"GATEHOUSE_PORT": "http"})
    assert info.value.file == "$GATEHOUSE_PORT"
    assert info.value.path == "server.port"


def test_interpolation_with_default() -> None:
    text = BASE + "redis: {url: '${NOPE:-redis://fallback:1}'}\n"
    assert load_config_text(text, "inline.yaml", environ={}).gateway.redis.url == "redis://fallback:1"


def test_memory_backend_without_redis() -> None:
    assert load_config_text(BASE, "inline.yaml", environ={}).state_backend == "memory"


def test_config_is_immutable() -> None:
    loaded = load_config_text(BASE, "inline.yaml", environ={})
    with pytest.raises(AttributeError):
        loaded.gateway.server.port = 1  # type: ignore[misc]


def test_example_config_is_valid() -> None:
    example = REPO / "examples" / "gatehouse.yaml"
    loaded = load_config(str(example), environ={})
    assert loaded.routes
