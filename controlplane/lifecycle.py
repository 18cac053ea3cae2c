"""Draining: what readiness reports between SIGTERM and the end of accept.

The main process (``gatehouse run``) creates the marker file on SIGTERM; every worker's
``/health/ready`` checks it, so all workers turn unready at once without any IPC.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_DIR_ENV = "GATEHOUSE_RUN_DIR"
MARKER = "draining"


def marker_path() -> Path | None:
    run_dir = os.environ.get(RUN_DIR_ENV)
    return Path(run_dir) / MARKER if run_dir else None


class DrainState:
    __slots__ = ("_local", "_marker")

    def __init__(self, marker: Path | None) -> None:
        self._marker = marker
        self._local = False

    def start_local(self) -> None:
        """This worker is shutting down (lifespan shutdown)."""
        self._local = True

    @property
    def draining(self) -> bool:
        return self._local or (self._marker is not None and self._marker.exists())


def begin_drain(run_dir: Path) -> None:
    (run_dir / MARKER).touch()
