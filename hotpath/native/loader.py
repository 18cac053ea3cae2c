"""Serve the compiled modules, but only from a build that matches the sources exactly.

``GATEHOUSE_NATIVE`` chooses: ``auto`` (the default: compiled when a matching build
exists, interpreted otherwise), ``off`` (always interpreted) or ``require`` (``gatehouse
run`` and every worker refuse to start without a matching build, so a deployment that
expects the compiled path never runs slower without saying so).

All or nothing: compiled modules call each other natively, so a build is used whole or
not at all. It must be installed before any of its modules is imported (a module loaded
interpreted and again compiled would give two classes of one name), which is why
``hotpath/__init__.py`` runs ``install`` and the other two packages import ``hotpath``
first.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from hotpath.native import manifest

MODE_ENV = "GATEHOUSE_NATIVE"
MODES = ("auto", "off", "require")


@dataclass(frozen=True)
class NativeStatus:
    mode: str
    active: bool
    modules: int
    directory: str
    reason: str  # why it is inactive, or what is active
    error: str | None = None  # set when the gateway must not start (bad mode, require unmet)

    def describe(self) -> str:
        if self.active:
            return f"compiled hot path: {self.modules} modules from {self.directory}"
        return f"interpreted hot path ({self.reason})"

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "active": self.active, "modules": self.modules, "reason": self.reason}


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds exactly the modules of one build, at the paths its manifest names."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def check(directory: Path, root: Path) -> tuple[dict[str, Path] | None, str]:
    """The module files of a build that matches the sources under ``root``, or why not."""
    path = directory / manifest.MANIFEST
    try:
        # Inside the try: a build the gateway's user may not read is a reason, not a crash.
        if not path.is_file():
            return None, f"no native build in {directory}; `gatehouse native build` makes one"
        data = json.loads(path.read_text())
        if data.get("format") != manifest.FORMAT:
            return None, f"native build in {directory} has an unknown format; rebuild it"
        if data.get("ext_suffix") != manifest.ext_suffix():
            return None, (f"native build in {directory} is for {data.get('ext_suffix')}, "
                          f"this interpreter loads {manifest.ext_suffix()}; rebuild it")
        if sorted(data.get("modules", {})) != sorted(manifest.MODULES):
            return None, f"native build in {directory} compiled other modules than this version lists; rebuild it"
        if data.get("fingerprint") != manifest.fingerprint(root):
            return None, f"sources changed since the native build in {directory}; rebuild it"
        files = {name: directory / rel for name, rel in {**data["modules"], **data["group"]}.items()}
        unreadable = [str(f) for f in files.values() if not f.is_file() or not os.access(f, os.R_OK)]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"native build manifest {path} is unreadable ({type(exc).__name__}: {exc})"
    if unreadable:
        return None, f"native build in {directory} is incomplete or unreadable ({unreadable[0]})"
    return files, f"{len(manifest.MODULES)} modules"


_status: NativeStatus | None = None


def install() -> NativeStatus:
    """Decide once per process; on success put the build's finder first on the meta path."""
    global _status
    if _status is not None:
        return _status
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    directory = manifest.native_dir()
    if mode not in MODES:
        _status = NativeStatus(mode, False, 0, str(directory), "invalid mode",
                               f"{MODE_ENV} must be one of {', '.join(MODES)} (got {mode!r})")
        return _status
    if mode == "off":
        _status = NativeStatus(mode, False, 0, str(directory), f"{MODE_ENV}=off")
        return _status
    files, reason = check(directory, manifest.source_root())
    early = [m for m in manifest.MODULES if m in sys.modules]
    if files is not None and early:
        files, reason = None, f"{early[0]} was imported before the native loader ran"
    if files is None:
        error = f"{MODE_ENV}=require, but {reason}" if mode == "require" else None
        _status = NativeStatus(mode, False, 0, str(directory), reason, error)
        return _status
    sys.meta_path.insert(0, _NativeFinder(files))
    _status = NativeStatus(mode, True, len(manifest.MODULES), str(directory), reason)
    return _status


def status() -> NativeStatus:
    return install()
