"""The ``admin:`` section, and the token it resolves to.

The token is written in the file (normally as ``${GATEHOUSE_ADMIN_TOKEN}``) or read from
the environment variable named by ``token_env``. With ``enabled`` unset the admin API
runs exactly when a token exists; ``enabled: true`` without one stops startup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from hotpath.structs import Strict

MIN_TOKEN_LENGTH = 16


class AdminConfig(Strict, frozen=True, kw_only=True):
    enabled: bool | None = None
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65_535)] = 8081
    token: str | None = None
    token_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "GATEHOUSE_ADMIN_TOKEN"
    # Requests whose body exceeds this are refused with 413.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 65_536
    # Longest wait for a request's head and body, and idle keep-alive time.
    request_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    # Connections served at once per worker; more wait in the listen backlog.
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    # Per-instance reachability probe of GET /services.
    probe_timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 1.0


class AdminSettingsError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def resolve_token(config: AdminConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The admin token if the admin API is to run, None when it is off."""
    environ = os.environ if env is None else env
    token = config.token if config.token else environ.get(config.token_env) or None
    if config.enabled is False:
        return None
    if token is None:
        if config.enabled:
            raise AdminSettingsError(
                "token", f"the admin API is enabled but has no token: set {config.token_env} or admin.token"
            )
        return None
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or token.strip() != token:
        raise AdminSettingsError(
            "token",
            f"the admin token must be at least {MIN_TOKEN_LENGTH} printable characters without spaces",
        )
    return token
