"""The compiled hot path (hotpath/native), built by mypyc and run by the real gateway.

The build is the ``native_build`` fixture (tests/conftest.py). scripts/test.sh also runs
every integration test a second time with all gateways on this build; these tests pin
down what that pass relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from hotpath.native import manifest
from tests.conftest import GatewayFactory
from tests.support.processes import REPO, Gateway, RedisServer, Upstream

pytestmark = pytest.mark.integration

SECRET = "native-test-secret-with-enough-entropy-0123456789"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(extra)
    return env


def _full_chain(upstream_url: str, redis_url: str) -> dict[str, object]:
    tier = {"per_second": 1000, "per_minute": 60000, "burst": 1000}
    return {
        "redis": {"url": redis_url},
        "services": {"backend": {"urls": [upstream_url], "breaker": {},
                                 "timeouts": {"connect": 1, "read": 5, "total": 10}}},
        "plugins": {
            "auth": {"providers": {"local": {"algorithms": ["HS256"], "secret": SECRET}}},
            "rate_limit": {"policies": {"p": {"key": "user", "tiers": {"anonymous": tier, "free": tier}}}},
        },
        "routes": [
            {"name": "api", "path": "/api", "service": "backend", "strip_prefix": True,
             "plugins": {"auth": {"mode": "required"}, "rate_limit": {"policy": "p"}}},
            {"name": "cached", "path": "/cached", "service": "backend", "strip_prefix": True,
             "plugins": {"cache": {"ttl": 60}}},
        ],
        "observability": {"access_log": {"enabled": True, "format": "json"}},
    }


def _native_health(gw: Gateway) -> dict[int, dict[str, object]]:
    """/health of each worker, by pid (new connections spread over the workers)."""
    seen: dict[int, dict[str, object]] = {}
    for _ in range(200):
        body = httpx.get(f"{gw.url}/health", timeout=5).json()
        seen[body["pid"]] = body["native"]
        if len(seen) == 2:
            break
    return seen


def test_the_gateway_serves_the_full_chain_on_the_compiled_hot_path(
    native_build: Path, upstream: Upstream, redis_server: RedisServer, gateway_factory: GatewayFactory
) -> None:
    gw = gateway_factory(_full_chain(upstream.url, redis_server.url), workers=2,
                         env={"GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": str(native_build)})
    workers = _native_health(gw)
    assert len(workers) == 2, workers
    for native in workers.values():
        assert native["active"] is True and native["modules"] == len(manifest.MODULES), native
    assert f"compiled hot path: {len(manifest.MODULES)} modules" in gw.output()

    token = jwt.encode({"sub": "alice", "tier": "free", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    auth = {"authorization": f"Bearer {token}"}
    r = httpx.get(f"{gw.url}/api/echo/x?a=1", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/echo/x" and r.json()["query"] == "a=1"
    assert r.headers["x-ratelimit-limit"] and r.headers["x-request-id"]
    posted = httpx.post(f"{gw.url}/api/echo", headers=auth, content=b"x" * 100_000)
    assert posted.status_code == 200 and posted.json()["body_len"] == 100_000

    denied = httpx.get(f"{gw.url}/api/echo")
    assert denied.status_code == 401 and denied.json()["error"]["code"]
    bad = httpx.get(f"{gw.url}/api/..%2f..%2fetc/passwd", headers=auth)
    assert bad.status_code in (400, 404) and bad.json()["error"]["code"]

    first = httpx.get(f"{gw.url}/cached/cache/native")
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    again = httpx.get(f"{gw.url}/cached/cache/native")
    assert again.headers["x-cache"] == "HIT" and again.json() == first.json()
    assert "Traceback" not in gw.output()


def test_every_module_imports_on_the_compiled_hot_path(native_build: Path) -> None:
    """Interpreted modules that subclass or wrap compiled classes fail at import, if anywhere."""
    code = (
        "import importlib, pkgutil, sys, hotpath, plugins, observability\n"
        "from hotpath.native.loader import status\n"
        "names = []\n"
        "for pkg in (hotpath, plugins, observability):\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if '.native.lib' in info.name or info.name.endswith('__main__'):\n"
        "            continue\n"
        "        importlib.import_module(info.name); names.append(info.name)\n"
        "compiled = [m for m in names if sys.modules[m].__file__.endswith('.so')]\n"
        "print(status().active, len(names), len(compiled))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=_clean_env(GATEHOUSE_NATIVE="require", GATEHOUSE_NATIVE_DIR=str(native_build)),
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    active, imported, compiled = done.stdout.split()
    assert active == "True"
    assert int(compiled) == len(manifest.MODULES) and int(imported) > int(compiled)


def test_a_stale_build_is_refused_or_skipped(
    native_build: Path, upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(native_build, stale)
    record = json.loads((stale / manifest.MANIFEST).read_text())
    record["fingerprint"] = "0" * 64  # as if a source had been edited after the build
    (stale / manifest.MANIFEST).write_text(json.dumps(record))
    config = {"services": {"backend": {"urls": [upstream.url]}},
              "routes": [{"name": "api", "path": "/api", "service": "backend", "strip_prefix": True}]}

    refused = gateway_factory(config, expect_failure=True,
                              env={"GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": str(stale)})
    assert refused.proc.returncode == 2
    assert "GATEHOUSE_NATIVE=require, but sources changed since the native build" in refused.output()

    gw = gateway_factory(config, env={"GATEHOUSE_NATIVE": "auto", "GATEHOUSE_NATIVE_DIR": str(stale)})
    for native in _native_health(gw).values():
        assert native["active"] is False and "sources changed" in str(native["reason"])
    assert httpx.get(f"{gw.url}/api/echo").status_code == 200


def test_the_build_is_readable_by_the_user_that_runs_the_gateway(native_build: Path) -> None:
    """The image builds as root and runs as uid 10001: every part must be world-readable."""
    assert native_build.stat().st_mode & 0o005 == 0o005
    for path in native_build.rglob("*"):
        needed = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & needed == needed, f"{path} is {oct(path.stat().st_mode)}"


def _native_status(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", "native", "status"], cwd=REPO,
                          env=_clean_env(**env), capture_output=True, text=True, timeout=120, check=False)


def test_native_status_loads_every_module_and_fails_loudly(native_build: Path, tmp_path: Path) -> None:
    ok = _native_status(GATEHOUSE_NATIVE="require", GATEHOUSE_NATIVE_DIR=str(native_build))
    assert ok.returncode == 0, ok.stderr
    assert f"loaded: all {len(manifest.MODULES)} compiled modules" in ok.stdout

    bad_mode = _native_status(GATEHOUSE_NATIVE="fast", GATEHOUSE_NATIVE_DIR=str(native_build))
    assert bad_mode.returncode == 1 and "GATEHOUSE_NATIVE must be one of" in bad_mode.stderr

    broken = tmp_path / "broken"
    shutil.copytree(native_build, broken)
    (broken / f"hotpath/gateway{manifest.ext_suffix()}").write_bytes(b"not a shared object")
    failed = _native_status(GATEHOUSE_NATIVE="require", GATEHOUSE_NATIVE_DIR=str(broken))
    assert failed.returncode == 1 and "does not load: hotpath." in failed.stderr, failed.stderr
