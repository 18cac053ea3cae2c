"""Shared fixtures: real redis-server, real upstreams, the real gateway under Granian."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.processes import Gateway, RedisServer, Upstream

GatewayFactory = Callable[..., Gateway]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture
def fresh_upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gateway_factory() -> Iterator[GatewayFactory]:
    """Start gateways from config dicts; all are stopped when the module ends."""
    started: list[Gateway] = []

    def start(config: dict[str, Any], **kwargs: Any) -> Gateway:
        gw = Gateway(config, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def basic_config(upstream_url: str, **route_overrides: Any) -> dict[str, Any]:
    """One service 'backend' and one prefix route '/api' stripping its prefix."""
    route: dict[str, Any] = {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True}
    route.update(route_overrides)
    return {
        "services": {"backend": {"urls": [upstream_url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "routes": [route],
    }
