"""The image's dependency lock: the runtime closure of pyproject's dependencies, pinned.

``requirements.lock`` is what the Dockerfile installs, so the image runs exactly the
versions the test suite ran. Regenerate it from the current virtualenv after changing a
dependency::

    python -m tests.deploy.lockfile --write

Only runtime dependencies are pinned; test extras never reach the image.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "requirements.lock"
HEADER = (
    "# Runtime dependencies of gatehouse, pinned: the Dockerfile installs exactly these.\n"
    "# Generated from the test virtualenv by `python -m tests.deploy.lockfile --write`; do not edit.\n"
)


def project_requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [Requirement(r) for r in data["project"]["dependencies"]]


def _applies(req: Requirement, extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    if not extras:
        return req.marker.evaluate({**env, "extra": ""})
    return any(req.marker.evaluate({**env, "extra": e}) for e in extras)


def runtime_closure(roots: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version for every runtime dependency, transitively.

    Raises ``LookupError`` naming the package when one is not installed in this interpreter.
    """
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[Requirement, frozenset[str]]] = [(r, frozenset()) for r in roots]
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        extras = frozenset(canonicalize_name(e) for e in req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise LookupError(f"{req.name} (needed by the runtime closure) is not installed") from None
        pinned[name] = dist.version
        todo.extend((Requirement(r), extras) for r in dist.requires or ())
    return pinned


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def parse_lock(text: str) -> dict[str, str]:
    """Canonical name -> pinned version; every non-comment line must be ``name==version``."""
    pins: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise ValueError(f"requirements.lock line {n}: '{raw}' is not an exact pin (name==version)")
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {LOCK.name} instead of printing it")
    args = parser.parse_args(argv)
    text = render(runtime_closure(project_requirements()))
    if args.write:
        LOCK.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
