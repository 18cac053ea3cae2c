"""Source patterns that mypyc compiles into wrong code, kept out of the compiled modules.

Both were found by running the integration tests on the real build: a traversal path
answered 500 where the interpreted gateway answers 400, and cache hits from the shared
tier answered 500.
"""

from __future__ import annotations

import ast

import pytest

from hotpath.native.manifest import MODULES, source_file, source_root


@pytest.mark.parametrize("module", MODULES)
def test_no_exception_name_is_bound_to_two_types_in_one_function(module: str) -> None:
    """mypyc gives ``except A as exc`` and ``except B as exc`` in one function a single
    variable typed A: binding a B then raises ``TypeError: A object expected; got B``."""
    tree = ast.parse(source_file(module, source_root()).read_text())
    clashes = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        bound: dict[str, set[str]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.ExceptHandler) and node.name:
                bound.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "BaseException")
        clashes += [f"{fn.name}(): '{name}' as {sorted(types)}" for name, types in bound.items() if len(types) > 1]
    assert not clashes, f"{module}: give each except clause its own name: {clashes}"


@pytest.mark.parametrize("module", MODULES)
def test_no_msgspec_struct_is_compiled(module: str) -> None:
    """A compiled class keeps only bare annotations (``tuple`` for ``tuple[Header, ...]``),
    so msgspec would decode and validate its fields without their item types."""
    tree = ast.parse(source_file(module, source_root()).read_text())
    structs = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any("Struct" in ast.unparse(base) for base in node.bases)
    ]
    assert not structs, f"{module} defines msgspec structs {structs}: keep them in a module that is not compiled"


@pytest.mark.parametrize("module", MODULES)
def test_no_object_identity_in_compiled_code(module: str) -> None:
    """Compiled code keeps fixed-size tuples unboxed: ``id(h)`` is the address of a temporary
    box, reused by the next one, so identity tests match headers they should not."""
    tree = ast.parse(source_file(module, source_root()).read_text())
    calls = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id"]
    assert not calls, f"{module} calls id() on lines {calls}"
