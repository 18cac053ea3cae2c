"""Secrets never leave GET /config; the admin token rules."""

from __future__ import annotations

import pytest

from controlplane.admin.config import AdminConfig, AdminSettingsError, resolve_token
from controlplane.admin.redact import REDACTED, redact


def test_redacts_secret_keys_maps_and_url_passwords() -> None:
    data = {
        "redis": {"url": "redis://user:hunter2@db:6379/0", "key_prefix": "gh"},
        "admin": {"token": "x" * 20, "token_env": "GATEHOUSE_ADMIN_TOKEN"},
        "tracing": {"headers": {"x-api-key": "k"}},
        "auth": {"client_secret": "s", "jwks_url": "https://idp/jwks"},
        "audit": {"sink_token": "t", "user_hash_key": "h"},
        "list": [{"password": "p"}],
        "key_sets": {"callbacks": {"header": "x-service-token",
                                   "keys": [{"id": "k1", "hash": "sha256:" + "0" * 64, "subject": "w"}]}},
        "signed_url": {"keys": [{"id": "k1", "secret": "s" * 32}]},
    }
    out = redact(data)
    assert out["key_sets"]["callbacks"] == {"header": "x-service-token",
                                            "keys": [{"id": "k1", "hash": REDACTED, "subject": "w"}]}
    assert out["signed_url"]["keys"] == [{"id": "k1", "secret": REDACTED}]
    assert out["redis"] == {"url": f"redis://user:{REDACTED}@db:6379/0", "key_prefix": "gh"}
    assert out["admin"] == {"token": REDACTED, "token_env": "GATEHOUSE_ADMIN_TOKEN"}
    assert out["tracing"]["headers"] == {"x-api-key": REDACTED}
    assert out["auth"] == {"client_secret": REDACTED, "jwks_url": "https://idp/jwks"}
    assert out["audit"] == {"sink_token": REDACTED, "user_hash_key": REDACTED}
    assert out["list"] == [{"password": REDACTED}]


def test_token_resolution() -> None:
    token = "t" * 24
    assert resolve_token(AdminConfig(), {}) is None
    assert resolve_token(AdminConfig(), {"GATEHOUSE_ADMIN_TOKEN": token}) == token
    assert resolve_token(AdminConfig(enabled=False), {"GATEHOUSE_ADMIN_TOKEN": token}) is None
    with pytest.raises(AdminSettingsError):
        resolve_token(AdminConfig(enabled=True), {})
    with pytest.raises(AdminSettingsError):
        resolve_token(AdminConfig(token="short"), {})
