"""Module-level names of the compiled modules are ``Final``.

mypyc reads a ``Final`` module attribute from a C static. Any other module global is a
dict lookup and a type check at every use. The full chain made about 65 of them per
request; made Final, its instructions per request fell by 11% in process (callgrind,
bench/results/2026-12-07-third-sitting-instructions.json).
Names imported from modules that are not compiled are globals too, so the hot ones are
bound again as ``Final`` (``perf_counter: Final = time.perf_counter``).
"""

from __future__ import annotations

import ast

import pytest

from hotpath.native.manifest import MODULES, source_file, source_root

# Bounded-cache sizes that tests shrink with monkeypatch (read only on a cache miss).
NOT_FINAL = {
    "plugins.rate_limit.policy": {"RECENT_CALLERS"},
    "hotpath.redis.batcher": {"WIRE_KEYS_KEPT"},
}


def _is_type_alias(name: str, value: ast.expr | None) -> bool:
    """``Header = tuple[bytes, bytes]``, ``Body = bytes | ... | None``: CapWords names of a
    subscripted or united type (a Final would make them variables, not aliases)."""
    cap_words = name[:1].isupper() and not name.isupper()
    if cap_words and isinstance(value, ast.Subscript | ast.BinOp):
        return True
    # ``T = TypeVar("T")``: a type variable, for generic classes and functions.
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "TypeVar")


def _is_final(annotation: ast.expr) -> bool:
    target = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    return isinstance(target, ast.Name) and target.id == "Final"


def plain_globals(source: str, allowed: set[str]) -> list[str]:
    """Module-level names bound without ``Final``, other than type aliases and ``allowed``."""
    plain = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                plain += [
                    n.id for n in ast.walk(target)
                    if isinstance(n, ast.Name) and not n.id.startswith("__") and n.id not in allowed
                    and not _is_type_alias(n.id, node.value)
                ]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            if node.value is not None and not _is_final(node.annotation) and name not in allowed:
                plain.append(name)
    return plain


@pytest.mark.parametrize("module", MODULES)
def test_module_level_names_are_final(module: str) -> None:
    plain = plain_globals(source_file(module, source_root()).read_text(), NOT_FINAL.get(module, set()))
    assert not plain, f"{module}: make these Final (or a type alias): {plain}"


def test_the_check_catches_plain_globals() -> None:
    source = ("X = 1\nY: Final = 2\nZ: int = 3\nW: Final[int] = 4\nHeader = tuple[bytes, bytes]\n"
              "A, B = range(2)\nKEPT = 5\n__all__ = []\n")
    assert plain_globals(source, {"KEPT"}) == ["X", "Z", "A", "B"]
