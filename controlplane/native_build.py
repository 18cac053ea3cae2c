"""``gatehouse native build``: compile ``manifest.MODULES`` with mypyc into their own directory.

The compiler runs in a child process (setuptools and mypy keep global state and exit on
errors), in a scratch directory holding a copy of the three packages: setuptools never
reads the project's pyproject.toml, and mypy never sees an installed package's neighbours
in site-packages as our code (``typing_extensions.py`` there would shadow its own). The
result is assembled in a staging directory and swapped in whole, with the manifest written
last: a half-finished build is never mistaken for a usable one.
Needs mypy (with mypyc), setuptools, a C compiler and the Python headers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hotpath.native import manifest


class BuildError(Exception):
    pass


def build(out: Path, *, jobs: int | None = None) -> Path:
    root = manifest.source_root()
    out = out.resolve()
    _refuse_foreign(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
        # mkdtemp makes it 0700; a gateway running as another user (the image's) must read it.
        staging.chmod(0o755)
    except OSError as exc:
        raise BuildError(f"cannot prepare {out}: {exc}") from exc
    try:
        with tempfile.TemporaryDirectory(prefix="gatehouse-native-") as work:
            snapshot = Path(work) / "src"
            for package in manifest.PACKAGES:
                shutil.copytree(root / package, snapshot / package, ignore=_not_sources)
            before = manifest.fingerprint(snapshot)
            if manifest.fingerprint(root) != before:
                raise BuildError("the sources changed while they were being copied; build again")
            env = {**os.environ, "GATEHOUSE_NATIVE": "off"}
            cmd = [sys.executable, "-m", "controlplane.native_build", "--compile", str(staging), str(snapshot),
                   str(jobs or os.cpu_count() or 1)]
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BuildError(f"mypyc failed (exit {done.returncode}):\n{_tail(done.stdout + done.stderr)}")
        if manifest.fingerprint(root) != before:
            raise BuildError("the sources changed while they were being compiled; build again")
        suffix = manifest.ext_suffix()
        modules = {m: _relative(m, suffix) for m in manifest.MODULES}
        group = {f"{manifest.GROUP}__mypyc": f"{manifest.GROUP}__mypyc{suffix}"}
        for rel in (*modules.values(), *group.values()):
            if not (staging / rel).is_file():
                raise BuildError(f"mypyc did not produce {rel}")
        from mypy.version import __version__ as mypy_version

        record = {
            "format": manifest.FORMAT,
            "ext_suffix": suffix,
            "fingerprint": before,
            "modules": modules,
            "group": group,
            "mypy": mypy_version,
            "python": sys.version.split()[0],
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / manifest.MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _refuse_foreign(out: Path) -> None:
    """Only an empty directory or an earlier build may be replaced: ``--out`` pointed at
    anything else by mistake must not be deleted. ``out`` is resolved: no symlinks here."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BuildError(f"{out} exists and is not a directory; choose another --out")
    try:
        ours = (out / manifest.MANIFEST).is_file() or not any(out.iterdir())
    except OSError as exc:
        raise BuildError(f"cannot read {out}: {exc}") from exc
    if not ours:
        raise BuildError(f"{out} is not empty and holds no native build; choose another --out")


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` with ``staging`` by two renames, so a reader sees the old build,
    no build (and runs interpreted), or the new one, never a mixture; the old files stay
    mapped in processes that already loaded them."""
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent)) / "lib"
    try:
        if out.exists():
            out.rename(aside)
        staging.rename(out)
    except OSError as exc:
        raise BuildError(f"cannot install the build at {out} (another build at the same time?): {exc}") from exc
    finally:
        shutil.rmtree(aside.parent, ignore_errors=True)


def _not_sources(directory: str, names: list[str]) -> set[str]:
    """What the snapshot leaves out: byte code, and the build directory with its staging."""
    skipped = {n for n in names if n == "__pycache__"}
    if Path(directory).resolve() == manifest.default_dir().parent:
        skipped |= {n for n in names if n == manifest.default_dir().name
                    or n.startswith((".lib.staging-", ".lib.old-"))}
    return skipped


def _relative(module: str, suffix: str) -> str:
    return "/".join(module.split(".")) + suffix


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _compile(out: str, root: str, jobs: str) -> None:
    """Child process: mypycify the modules and build them into ``out``."""
    from mypyc.build import mypycify
    from setuptools import setup

    rootp = Path(root)
    sources = [str(manifest.source_file(m, rootp)) for m in manifest.MODULES]
    # Not the project's mypy settings: an installed package has no pyproject.toml, and
    # compiling needs the types, not strict mode's extra checks (`mypy` in CI runs those).
    extensions = mypycify(
        ["--ignore-missing-imports", *sources],
        opt_level="3",
        group_name=manifest.GROUP,
        multi_file=True,  # many C files, so the compiler can use every core
        target_dir=str(Path.cwd() / "c"),
    )
    setup(
        name="gatehouse-native",
        ext_modules=extensions,
        script_args=["build_ext", "--build-lib", out, "--build-temp", str(Path.cwd() / "obj"), "--parallel", jobs],
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--compile":
        _compile(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit("usage: gatehouse native build [--out DIR]")
