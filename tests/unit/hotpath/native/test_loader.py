"""The native loader's decisions: which builds it accepts, and what each mode does.

No compiler here: the builds are manifests over plain files. Loading a real mypyc build
through the real gateway is tests/integration/test_native.py.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotpath.native import manifest
from hotpath.native.loader import _NativeFinder, check
from tests.support.processes import REPO


def _tree(root: Path) -> Path:
    for package in manifest.PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "hotpath" / "gateway.py").write_text("X = 1\n")
    return root


def _build(directory: Path, root: Path, **overrides: object) -> Path:
    """A fake build of ``manifest.MODULES``: a file per module and a manifest naming them."""
    suffix = manifest.ext_suffix()
    modules = {m: "/".join(m.split(".")) + suffix for m in manifest.MODULES}
    group = {f"{manifest.GROUP}__mypyc": f"{manifest.GROUP}__mypyc{suffix}"}
    for rel in (*modules.values(), *group.values()):
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(b"")
    record: dict[str, object] = {
        "format": manifest.FORMAT,
        "ext_suffix": suffix,
        "fingerprint": manifest.fingerprint(root),
        "modules": modules,
        "group": group,
    }
    record.update(overrides)
    (directory / manifest.MANIFEST).write_text(json.dumps(record))
    return directory


def test_a_build_matching_the_sources_is_used(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    build = _build(tmp_path / "lib", root)
    files, reason = check(build, root)
    assert files is not None, reason
    assert set(files) == {*manifest.MODULES, f"{manifest.GROUP}__mypyc"}
    assert files["hotpath.gateway"] == build / f"hotpath/gateway{manifest.ext_suffix()}"


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    build = _build(tmp_path / "lib", root)
    (root / "hotpath" / "gateway.py").write_text("X = 2\n")
    files, reason = check(build, root)
    assert files is None
    assert "sources changed" in reason


def test_any_module_of_the_three_packages_counts_not_only_compiled_ones(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    before = manifest.fingerprint(root)
    (root / "observability" / "new_module.py").write_text("")
    assert manifest.fingerprint(root) != before
    after_add = manifest.fingerprint(root)
    (root / "observability" / "notes.txt").write_text("not python")
    assert manifest.fingerprint(root) == after_add
    (root / "observability" / "new_module.py").rename(root / "observability" / "renamed.py")
    assert manifest.fingerprint(root) != after_add


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"format": 99}, "unknown format"),
        ({"ext_suffix": ".cpython-312-x86_64-linux-gnu.so"}, "this interpreter loads"),
        ({"modules": {"hotpath.gateway": "hotpath/gateway.so"}}, "other modules"),
        ({"modules": "not a mapping"}, "other modules"),
    ],
)
def test_a_build_for_something_else_is_refused(tmp_path: Path, override: dict[str, object], expected: str) -> None:
    root = _tree(tmp_path / "src")
    files, reason = check(_build(tmp_path / "lib", root, **override), root)
    assert files is None
    assert expected in reason


def test_missing_unreadable_and_incomplete_builds_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    files, reason = check(tmp_path / "nothing", root)
    assert files is None and "no native build" in reason and "gatehouse native build" in reason

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / manifest.MANIFEST).write_text("{not json")
    files, reason = check(broken, root)
    assert files is None and "unreadable" in reason

    build = _build(tmp_path / "lib", root)
    (build / f"hotpath/gateway{manifest.ext_suffix()}").unlink()
    files, reason = check(build, root)
    assert files is None and "incomplete" in reason


def test_the_finder_serves_exactly_the_listed_modules(tmp_path: Path) -> None:
    module = tmp_path / "gh_native_probe.py"
    module.write_text("WHERE = __file__\n")
    finder = _NativeFinder({"gh_native_probe": module})
    assert finder.find_spec("json", None) is None
    spec = finder.find_spec("gh_native_probe", None)
    assert spec is not None and spec.origin == str(module)
    sys.meta_path.insert(0, finder)
    try:
        loaded = importlib.import_module("gh_native_probe")
        assert str(module) == loaded.WHERE
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop("gh_native_probe", None)


def _status_in_child(env: dict[str, str]) -> dict[str, object]:
    code = (
        "import json, sys, hotpath; from hotpath.native.loader import status; s = status(); "
        "print(json.dumps({**s.as_dict(), 'error': s.error, 'gateway_loaded': 'hotpath.gateway' in sys.modules}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_modes_in_a_fresh_interpreter(tmp_path: Path) -> None:
    empty = str(tmp_path / "no-build")
    off = _status_in_child({"GATEHOUSE_NATIVE": "off", "GATEHOUSE_NATIVE_DIR": empty})
    assert off["active"] is False and off["error"] is None and off["reason"] == "GATEHOUSE_NATIVE=off"
    auto = _status_in_child({"GATEHOUSE_NATIVE_DIR": empty})  # unset means auto
    assert auto["mode"] == "auto" and auto["active"] is False and auto["error"] is None
    assert "no native build" in str(auto["reason"])
    required = _status_in_child({"GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": empty})
    assert required["active"] is False
    assert str(required["error"]).startswith("GATEHOUSE_NATIVE=require, but no native build")
    bogus = _status_in_child({"GATEHOUSE_NATIVE": "yes"})
    assert "must be one of auto, off, require (got 'yes')" in str(bogus["error"])
    # Deciding does not import the hot path itself.
    assert off["gateway_loaded"] is False


def test_run_refuses_to_start_when_require_is_unmet(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env = {**clean, "GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "run", "-c", str(REPO / "examples" / "gatehouse.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 2
    assert "GATEHOUSE_NATIVE=require, but no native build in" in out.stderr


def test_a_matching_build_is_installed_unless_a_module_was_imported_first(tmp_path: Path) -> None:
    build = str(_build(tmp_path / "lib", REPO))  # fake files, but a manifest that matches this checkout
    active = _status_in_child({"GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": build})
    assert active["active"] is True and active["error"] is None
    assert active["modules"] == len(manifest.MODULES)

    code = (
        "import sys, types; sys.modules['plugins.cache.local'] = types.ModuleType('plugins.cache.local'); "
        "import hotpath; from hotpath.native.loader import status; s = status(); print(s.active, '|', s.error)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**clean, "GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": build}, check=True)
    assert out.stdout.startswith("False |")
    assert "plugins.cache.local was imported before the native loader ran" in out.stdout


def test_a_build_that_cannot_be_read_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    # stat() fails with ENAMETOOLONG here, which Path.is_file() does not swallow: the same
    # path an unreadable directory takes (EACCES), reachable without dropping privileges.
    root = _tree(tmp_path / "src")
    files, reason = check(tmp_path / ("x" * 300), root)
    assert files is None and "unreadable" in reason and "OSError" in reason
