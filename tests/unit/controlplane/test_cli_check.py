"""``gatehouse check`` prints the effective routes and URLs and names the variables that
changed them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from controlplane.cli import main

CONFIG = """
services:
  users: {urls: ["http://users:8080"]}
  jobs: {urls: ["http://jobs:8080"]}
routes:
  - {name: api, path: /api, service: users}
  - {name: admin, path: /api/admin, service: users}
  - {name: jobs, path: /jobs, service: jobs}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("ROUTES_ENABLED", "ROUTES_DISABLED", "SERVICE_ENDPOINT_OVERRIDES", "USERS_SERVICE_URL",
                "JOBS_SERVICE_URL", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "gatehouse.yaml"
    path.write_text(CONFIG)
    return path


def test_check_names_what_the_environment_changed(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROUTES_DISABLED", "admin")
    monkeypatch.setenv("SERVICE_ENDPOINT_OVERRIDES", "jobs=http://jobs-canary:8080")
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "3 route(s) (1 switched off by the environment)" in out
    admin = next(line for line in out.splitlines() if line.strip().startswith("admin "))
    assert "OFF by ROUTES_DISABLED" in admin
    api = next(line for line in out.splitlines() if line.strip().startswith("api "))
    assert "OFF" not in api
    assert "  jobs   http://jobs-canary:8080  (from SERVICE_ENDPOINT_OVERRIDES)\n" in out
    assert "users  http://users:8080\n" in out

    assert main(["check", "-c", str(config), "--json"]) == 0
    rows = {r["name"]: r for r in orjson.loads(capsys.readouterr().out)}
    assert rows["admin"]["enabled"] is False and rows["admin"]["switched_off_by"] == "ROUTES_DISABLED"
    assert rows["api"]["enabled"] is True and rows["api"]["switched_off_by"] is None
    assert rows["jobs"]["urls"] == ["http://jobs-canary:8080"]
    assert rows["jobs"]["urls_from"] == "SERVICE_ENDPOINT_OVERRIDES"


def test_check_stops_on_an_unknown_name_and_names_the_variable(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROUTES_ENABLED", "api,jbos")
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "configuration error: $ROUTES_ENABLED: routes: unknown route 'jbos'" in err
