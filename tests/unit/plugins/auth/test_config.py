"""Bad auth configurations stop startup with the file, the path and the field."""

from __future__ import annotations

import pytest

from controlplane.build import build_gateway, new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config, load_config_text
from tests.support.paths import BAD_CONFIGS

BAD = BAD_CONFIGS / "auth"

# file -> (path, text in the message)
CASES = {
    "alg_none.yaml": ("plugins.auth.providers.main.algorithms[0]", "Invalid enum value 'none'"),
    "hs_without_secret.yaml": ("plugins.auth", "providers.main.secret: HS256 needs a shared secret"),
    "short_secret.yaml": ("plugins.auth", "providers.main.secret: HS256 needs a secret of at least 32 bytes"),
    "unknown_provider_key.yaml": ("plugins.auth.providers.main.audiance", "unknown key"),
    "no_keys.yaml": ("plugins.auth.providers.main", "RS256 needs keys: set jwks_url or public_keys"),
    "bad_jwks_url.yaml": ("plugins.auth.providers.main", "jwks_url must be an http(s) URL"),
    "scopes_on_optional.yaml": ("routes[0].plugins.auth", "scopes and roles need mode: required"),
    "bad_scope_name.yaml": ("routes[0].plugins.auth.scopes[0]", "matching regex"),
    "unknown_route_provider.yaml": ("routes[0].plugins.auth", "unknown provider 'corp'"),
    "key_bad_hash.yaml": ("plugins.auth.key_sets.callbacks.keys[0].hash", "matching regex '^sha256:"),
    "key_naive_expiry.yaml": ("plugins.auth.key_sets.callbacks.keys[0].expires_at", "with a timezone"),
    "key_set_duplicate_id.yaml": ("plugins.auth.key_sets.callbacks", "keys[1]: id 'k1' is used twice"),
    "key_set_empty.yaml": ("plugins.auth.key_sets.callbacks", "a key set needs keys, or redis: true"),
    "key_set_redis_without_redis.yaml": ("routes[0].plugins.auth", "no Redis is configured"),
    "key_set_unknown.yaml": ("routes[0].plugins.auth", "unknown key set 'calbacks'"),
    "key_set_without_api_key.yaml": ("routes[0].plugins.auth", "key_set needs api_key in credentials"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_auth_config_is_located(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEHOUSE_TEST_UNSET_SECRET", raising=False)
    path, text = CASES[name]
    with pytest.raises(ConfigError) as info:
        loaded = load_config(str(BAD / name), environ={})
        build_gateway(loaded, new_runtime(loaded))  # route-level checks run in plugin constructors
    err = info.value
    assert err.file == str(BAD / name)
    assert err.path == path
    assert text in err.message


def test_every_fixture_has_a_case() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(CASES)


GOOD = """
services:
  users: {urls: ["http://127.0.0.1:9001"]}
plugins:
  auth:
    realm: shop
    providers:
      corp:
        algorithms: [RS256, ES256]
        jwks_url: https://idp.example/.well-known/jwks.json
        issuer: https://idp.example/
        audience: [orders]
      internal:
        algorithms: [HS256]
        secret: ${INTERNAL_JWT_SECRET}
    default_provider: corp
routes:
  - {name: a, path: /a, service: users, plugins: {auth: {scopes: [read]}}}
  - {name: b, path: /b, service: users, plugins: {auth: {provider: internal, roles: [x, y], roles_match: all}}}
  - {name: c, path: /c, service: users, plugins: {auth: {mode: public}}}
"""


def test_good_config_builds_one_provider_instance_per_name() -> None:
    loaded = load_config_text(GOOD, "good.yaml", environ={"INTERNAL_JWT_SECRET": "x" * 40})
    runtime = new_runtime(loaded)
    build_gateway(loaded, runtime)
    corp = runtime.get_singleton("auth.provider.corp")
    internal = runtime.get_singleton("auth.provider.internal")
    assert corp is not None and corp.jwks is not None
    assert internal is not None and internal.jwks is None
