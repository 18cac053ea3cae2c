"""Imports flow one way between the packages, and the core has no import cycle.

controlplane -> plugins -> observability -> hotpath: a package may import those to its right,
never those to its left. Inside ``hotpath`` no module reaches itself through its imports
(imports made only for type checking count too: they tie the modules' designs together just
the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

LAYERS = ("hotpath", "observability", "plugins", "controlplane")


def _modules(package: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if "native/lib" in path.as_posix():
            continue
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return found


def test_packages_import_only_those_below_them() -> None:
    wrong = []
    for rank, package in enumerate(LAYERS):
        for name, path in _modules(package).items():
            for line, imported in _imports(path):
                top = imported.split(".")[0]
                if top in LAYERS and LAYERS.index(top) > rank:
                    wrong.append(f"{path.relative_to(REPO)}:{line} ({name}) imports {imported}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_core_has_no_import_cycle() -> None:
    modules = _modules("hotpath")
    graph = {
        name: sorted({imp for _, imp in _imports(path) if imp in modules and imp != name})
        for name, path in modules.items()
    }
    done: set[str] = set()
    trail: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in trail:
            return [*trail[trail.index(name):], name]
        if name in done:
            return None
        trail.append(name)
        for nxt in graph[name]:
            cycle = visit(nxt)
            if cycle:
                return cycle
        trail.pop()
        done.add(name)
        return None

    for name in graph:
        cycle = visit(name)
        assert cycle is None, "import cycle in hotpath: " + " -> ".join(cycle or [])
