"""Rendered kustomizations and the parsed Dockerfile, built once per test session."""

from __future__ import annotations

import pytest

# prometheus-client picks its storage on first import from PROMETHEUS_MULTIPROC_DIR: import
# it now, before any test patches the environment to a pod's.
import observability.metrics  # noqa: F401
from tests.deploy.manifests import (
    DOCKERFILE,
    K8S,
    OVERLAYS,
    Dockerfile,
    Manifests,
    kustomize,
    parse_dockerfile,
)


@pytest.fixture(scope="session")
def rendered() -> dict[str, Manifests]:
    targets = {"base": K8S / "base", **{name: K8S / "overlays" / name for name in OVERLAYS}}
    return {name: Manifests(name, kustomize(path)) for name, path in targets.items()}


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Manifests]) -> Manifests:
    """Each deployable overlay in turn."""
    return rendered[request.param]


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
