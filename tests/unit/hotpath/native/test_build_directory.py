"""Where ``gatehouse native build`` writes: only over its own earlier build, swapped in whole.

No compiler here: the refusals come before mypyc runs, and the swap is exercised on plain
directories. A real build's permissions are checked in tests/integration/test_native.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.native_build import BuildError, _swap_in, build
from hotpath.native import manifest


def test_a_directory_that_holds_something_else_is_never_replaced(tmp_path: Path) -> None:
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="holds no native build"):
        build(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    a_file = tmp_path / "file"
    a_file.write_text("keep me too")
    with pytest.raises(BuildError, match="not a directory"):
        build(a_file)
    assert a_file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "project"], "no staging left behind"


def test_the_new_build_replaces_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "lib"
    out.mkdir()
    (out / manifest.MANIFEST).write_text('{"old": true}')
    (out / "old.so").write_bytes(b"")
    staging = tmp_path / ".lib.staging-1"
    staging.mkdir()
    (staging / manifest.MANIFEST).write_text('{"new": true}')

    _swap_in(staging, out)

    assert sorted(p.name for p in out.iterdir()) == [manifest.MANIFEST]
    assert (out / manifest.MANIFEST).read_text() == '{"new": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"], "neither staging nor the old build remains"


def test_a_swap_that_cannot_happen_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cannot install the build"):
        _swap_in(tmp_path / "vanished-staging", tmp_path / "lib")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
