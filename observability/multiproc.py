"""prometheus-client multiprocess mode: the directory, dead workers, and ``/metrics``.

Granian forks its workers from ``gatehouse run``. prometheus-client picks its value
storage when it is first imported, so the main process must set
``PROMETHEUS_MULTIPROC_DIR`` before anything imports it (``prepare_dir`` runs first thing
in ``cmd_run``); every worker then writes its samples to its own memory-mapped files,
and ``/metrics`` in any worker sums the files of all of them.

A worker that exited (respawned after a crash, or stopped) is marked dead when any worker
next renders ``/metrics``: its live gauges (in-flight requests, breaker state) go, while its
counters and histograms stay in the sum, so a respawn neither loses nor doubles a count.
Found from the files themselves, not told by the server: no hook into Granian is needed.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("gatehouse")


class MultiprocessSetupError(RuntimeError):
    """prometheus-client was imported before the multiprocess directory was set."""


def prepare_dir() -> Path:
    """Create (or empty) the directory and export it; call before prometheus_client loads.

    A directory named by the operator is emptied of its ``.db`` files (values of a previous
    run would be summed in otherwise); without one, a private temporary directory is made
    and removed when the main process exits.
    """
    if "prometheus_client" in sys.modules and ENV not in os.environ:
        raise MultiprocessSetupError(
            "prometheus_client was imported before the multiprocess directory was set; "
            "metrics of the workers would not be shared"
        )
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="gatehouse-metrics-"))
    os.environ[ENV] = str(path)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked children inherit atexit hooks
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_dead(directory: str) -> list[int]:
    """Mark dead every process whose live-gauge files remain but which no longer runs."""
    from prometheus_client import multiprocess

    dead: list[int] = []
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid_text = path.stem.rpartition("_")[2]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid in dead or _alive(pid):
            continue
        try:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except OSError as exc:  # never let bookkeeping fail a scrape
            log.warning("could not mark metrics of worker %s dead: %s", pid, exc)
        dead.append(pid)
    return dead


class MetricsExposition:
    """Renders the text exposition: summed across workers in multiprocess mode."""

    __slots__ = ("_directory", "_registry")

    def __init__(self) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry

        self._registry: Any
        self._directory = os.environ.get(ENV)
        if self._directory:
            from prometheus_client.multiprocess import MultiProcessCollector

            self._registry = CollectorRegistry()
            MultiProcessCollector(self._registry)  # type: ignore[no-untyped-call]
        else:
            self._registry = REGISTRY

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        if self._directory:
            sweep_dead(self._directory)
        body: bytes = generate_latest(self._registry)
        return body

    def samples(self, families: tuple[str, ...]) -> list[tuple[str, dict[str, str], float]]:
        """Counter samples (``*_total``) of the named families, summed across workers."""
        out: list[tuple[str, dict[str, str], float]] = []
        for metric in self._registry.collect():
            if metric.name in families:
                totals = (s for s in metric.samples if s.name.endswith("_total"))
                out.extend((s.name, dict(s.labels), float(s.value)) for s in totals)
        return out
