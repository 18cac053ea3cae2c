"""Read what ships: kustomize output, the Dockerfile, and the environment a pod really gets.

Rendering shells out to ``kubectl kustomize`` (the Debian ``kubectl`` package; scripts/test.sh
installs it). A missing tool is a failure with the install hint, never a skip.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from controlplane.config.loader import LoadedConfig, load_config_text

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DOCKERFILE = REPO / "Dockerfile"
OVERLAYS = ("dev", "prod")
GATEWAY = "gatehouse"  # Deployment and container name

Doc = dict[str, Any]


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"'{name}' is not installed: {hint}")
    return path


def kustomize(target: Path) -> list[Doc]:
    kubectl = require_tool("kubectl", "apt-get install kubectl (scripts/test.sh does)")
    out = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {target} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


class Manifests:
    """One rendered kustomization, looked up by kind and name."""

    def __init__(self, name: str, docs: list[Doc]) -> None:
        self.name = name
        self.docs = docs

    def all(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Doc:
        """The only ``kind`` (named ``name``, or whose generated name starts with it)."""
        found = [
            d for d in self.all(kind)
            if name is None or d["metadata"]["name"] == name or _generated_from(d["metadata"]["name"], name)
        ]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> Doc | None:
        for d in self.all(kind):
            if d["metadata"]["name"] == name:
                return d
        return None

    @property
    def gateway(self) -> Doc:
        return self.one("Deployment", GATEWAY)

    @property
    def pod_spec(self) -> Doc:
        spec: Doc = self.gateway["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> Doc:
        found: list[Doc] = [c for c in self.pod_spec["containers"] if c["name"] == GATEWAY]
        assert len(found) == 1, f"{self.name}: the gateway Deployment needs one container named {GATEWAY}"
        return found[0]


def _generated_from(actual: str, base: str) -> bool:
    # configMapGenerator/secretGenerator append "-<10-char hash>".
    return re.fullmatch(re.escape(base) + r"-[a-z0-9]{10}", actual) is not None


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- the pod's environment --------------------------------------------------------------

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _secret_value(m: Manifests, name: str, key: str) -> str | None:
    secret = m.find("Secret", name)
    if secret is None:
        return None
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    if key in secret.get("data", {}):
        return base64.b64decode(secret["data"][key]).decode()
    return None


def pod_environment(
    m: Manifests, image_env: dict[str, str], external_secrets: dict[str, str]
) -> dict[str, str]:
    """The gateway container's environment as the kubelet builds it.

    Image ENV first, then ``envFrom``, then ``env`` (later wins). Secrets rendered by the
    overlay are read; ``external_secrets`` ("name/key" -> value) stands in for Secrets an
    operator creates outside the repository. ``limits.cpu`` rounds up to whole cores, as
    the kubelet does for a divisor of 1.
    """
    env = dict(image_env)
    c = m.container
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        cm = m.find("ConfigMap", ref)
        assert cm is not None, f"{m.name}: envFrom names ConfigMap {ref}, which is not rendered"
        env.update({str(k): str(v) for k, v in cm.get("data", {}).items()})
    for var in c.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = _VAR_REF.sub(lambda mt: env.get(mt.group(1), mt.group(0)), str(var["value"]))
            continue
        src = var["valueFrom"]
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            value = _secret_value(m, ref["name"], ref["key"])
            if value is None:
                value = external_secrets.get(f"{_base_name(ref['name'])}/{ref['key']}")
            if value is None:
                missing = f"{ref['name']}/{ref['key']}"
                assert ref.get("optional", False), f"{m.name}: required Secret {missing} is missing"
                continue
            env[name] = value
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            cm = m.find("ConfigMap", ref["name"])
            assert cm is not None and ref["key"] in cm.get("data", {}), f"{m.name}: {ref} is not rendered"
            env[name] = str(cm["data"][ref["key"]])
        elif "resourceFieldRef" in src:
            ref = src["resourceFieldRef"]
            resource_kind, _, resource = ref["resource"].partition(".")
            quantity = c["resources"][resource_kind][resource]
            env[name] = str(math.ceil(cpu_cores(quantity) / cpu_cores(ref.get("divisor", "1"))))
        elif "fieldRef" in src:
            env[name] = f"<{src['fieldRef']['fieldPath']}>"
    return env


def _base_name(name: str) -> str:
    return re.sub(r"-[a-z0-9]{10}$", "", name)


# Secrets an operator creates outside the repository (the prod overlay), by "name/key".
EXTERNAL_SECRETS = {
    "gatehouse-redis/url": "rediss+cluster://:secret@redis.example.internal:6379",
    "gatehouse-secrets/admin-token": "admin-token-from-a-secret-store",
    "gatehouse-secrets/jwt-secret": "0123456789abcdef0123456789abcdef-from-a-secret-store",
    "gatehouse-secrets/user-hash-key": "user-hash-key-from-a-secret-store",
}


def mounted_config(m: Manifests) -> tuple[str, str]:
    """(path inside the container, YAML text) of the config file the container is started with."""
    args = m.container.get("args", [])
    assert "--config" in args, f"{m.name}: the container must pass --config"
    path = args[args.index("--config") + 1]
    directory, _, filename = path.rpartition("/")
    mounts = {vm["mountPath"]: vm["name"] for vm in m.container.get("volumeMounts", [])}
    assert directory in mounts, f"{m.name}: nothing is mounted at {directory} for --config {path}"
    volume = next(v for v in m.pod_spec["volumes"] if v["name"] == mounts[directory])
    cm = m.find("ConfigMap", volume["configMap"]["name"])
    assert cm is not None, f"{m.name}: the config volume names a ConfigMap that is not rendered"
    assert filename in cm["data"], f"{m.name}: ConfigMap {cm['metadata']['name']} has no key {filename}"
    return path, str(cm["data"][filename])


# Variables that steer this test process itself (where prometheus-client writes, where
# temporary files go) rather than the configuration; they name the pod's volumes.
_PROCESS_ONLY = ("PROMETHEUS_MULTIPROC_DIR", "TMPDIR")


def in_pod_environment(environ: dict[str, str]) -> Any:
    """Patch os.environ to the pod's variables, minus those naming the pod's volumes."""
    kept = {k: v for k, v in environ.items() if k not in _PROCESS_ONLY}
    kept.update({k: os.environ[k] for k in _PROCESS_ONLY if k in os.environ})
    return mock.patch.dict(os.environ, kept, clear=True)


def gateway_config(
    m: Manifests, environ: dict[str, str], overrides: dict[str, Any] | None = None
) -> LoadedConfig:
    """The config as the pod's main process loads it. The process environment is the pod's
    too, because some plugin settings (the auth plugin's ``secret_env``) read it directly."""
    path, text = mounted_config(m)
    with in_pod_environment(environ):
        return load_config_text(text, f"{m.name}:{path}", environ=environ, overrides=overrides)


# --- the Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.args(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for raw in self.args("ENV"):
            for token in shlex.split(raw):
                key, sep, value = token.partition("=")
                assert sep, f"use ENV KEY=value, not the legacy form: ENV {raw}"
                values[key] = value
        return values


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped (enough for our checks)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    """A JSON (exec-form) instruction argument; shell form is refused."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value
