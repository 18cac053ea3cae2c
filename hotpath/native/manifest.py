"""What the native build compiles, and the fingerprint that ties a build to its sources."""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from pathlib import Path

PACKAGES = ("hotpath", "plugins", "observability")
# The mypyc group: one shared library holding every compiled module, so calls between
# them are native. Its name is a top-level module the loader maps like the others.
GROUP = "gatehouse_native"
MANIFEST = "manifest.json"
FORMAT = 1
DIR_ENV = "GATEHOUSE_NATIVE_DIR"

# The modules a request runs through, all mypy-strict. Left out on purpose: modules with
# async generators (unsupported by mypyc), classes derived from builtin exceptions other
# than Exception (hotpath/redis/link.py), msgspec
# structs (compiled, their annotations lose the item types msgspec validates with:
# plugins/cache/entry.py decoded headers as lists), and what runs only at startup.
MODULES: tuple[str, ...] = (
    "hotpath.context",
    "hotpath.deferred",
    "hotpath.errors",
    "hotpath.gateway",
    "hotpath.headers",
    "hotpath.paths",
    "hotpath.proxy",
    "hotpath.redis.batcher",
    "hotpath.responses",
    "hotpath.router",
    "hotpath.templates",
    "hotpath.telemetry",
    "hotpath.upstream.client",
    "hotpath.upstream.h1_client",
    "hotpath.upstream.h1_connection",
    "hotpath.upstream.h1_pool",
    "hotpath.upstream.service",
    "hotpath.resilience.contracts",
    "hotpath.resilience.hub",
    "hotpath.resilience.local",
    "hotpath.resilience.machine",
    "hotpath.resilience.permits",
    "hotpath.resilience.policy",
    "hotpath.resilience.retry",
    "hotpath.resilience.shared",
    "plugins.audit.plugin",
    "plugins.auth.api_keys",
    "plugins.auth.keys",
    "plugins.auth.plugin",
    "plugins.auth.verifier",
    "plugins.cache.hub",
    "plugins.cache.local",
    "plugins.cache.plugin",
    "plugins.cache.policy",
    "plugins.forward_auth.answers",
    "plugins.forward_auth.plugin",
    "plugins.rate_limit.backends.base",
    "plugins.rate_limit.backends.memory",
    "plugins.rate_limit.backends.redis",
    "plugins.rate_limit.limits",
    "plugins.rate_limit.metrics",
    "plugins.rate_limit.plugin",
    "plugins.rate_limit.policy",
    "plugins.security_headers.plugin",
    "plugins.signed_url.plugin",
    "plugins.signed_url.signer",
    "observability.access_log",
    "observability.gateway_telemetry",
    "observability.request_metrics",
)


def source_root() -> Path:
    """The directory holding the ``hotpath`` package (a checkout, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def default_dir() -> Path:
    return Path(__file__).resolve().parent / "lib"


def native_dir() -> Path:
    configured = os.environ.get(DIR_ENV)
    return Path(configured).resolve() if configured else default_dir()


def source_file(module: str, root: Path) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def ext_suffix() -> str:
    """The extension-module suffix of this interpreter (ABI and platform in its name)."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def fingerprint(root: Path) -> str:
    """A digest of every ``.py`` file of the three packages, by path and content.

    All of them, not only the compiled ones: compiled code was type-checked against the
    modules it imports, so an edit anywhere may invalidate a native assumption.
    """
    digest = hashlib.sha256()
    skip = default_dir()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if skip in path.parents:
                continue
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
