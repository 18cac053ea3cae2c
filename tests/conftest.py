"""Shared fixtures: real redis-server, real upstreams, the real gateway under Granian."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO, TESTS_NATIVE_DIR_ENV, Gateway, RedisServer, Upstream

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


# scripts/test.sh builds the compiled hot path once and names it here; run alone, the
# tests that need a build make one (about a minute).
NATIVE_BUILD_ENV = "GATEHOUSE_TESTS_NATIVE_BUILD"


@pytest.fixture(scope="session")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A native build (hotpath/native) of this checkout's sources."""
    given = os.environ.get(NATIVE_BUILD_ENV) or os.environ.get(TESTS_NATIVE_DIR_ENV)
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("native") / "lib"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    done = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "native", "build", "--out", str(out)],
        cwd=REPO, env={**env, "GATEHOUSE_NATIVE": "off"}, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def basic_config(upstream_url: str, **route_overrides: Any) -> dict[str, Any]:
    """One service 'backend' and one prefix route '/api' stripping its prefix."""
    route: dict[str, Any] = {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True}
    route.update(route_overrides)
    return {
        "services": {"backend": {"urls": [upstream_url], "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "routes": [route],
    }
