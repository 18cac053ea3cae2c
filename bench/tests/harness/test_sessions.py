"""Servers the harness starts share its session (and scheduler autogroup) unless asked not to."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from bench.harness.__main__ import parse
from tests.support import processes


@pytest.fixture
def restore() -> Iterator[None]:
    before = processes.SEPARATE_SESSIONS
    yield
    processes.SEPARATE_SESSIONS = before


def _spawn() -> tuple[int, int, int]:
    proc = subprocess.Popen(["sleep", "30"], **processes.spawn_group())
    try:
        return proc.pid, os.getpgid(proc.pid), os.getsid(proc.pid)
    finally:
        processes.stop_process_group(proc)


@pytest.mark.usefixtures("restore")
def test_a_server_gets_its_own_process_group_in_the_callers_session() -> None:
    processes.SEPARATE_SESSIONS = False
    pid, pgid, sid = _spawn()
    assert pgid == pid  # stop_process_group reaches its children
    assert sid == os.getsid(0)  # same autogroup as the load generator the harness runs


@pytest.mark.usefixtures("restore")
def test_separate_sessions_start_a_session_per_server() -> None:
    processes.SEPARATE_SESSIONS = True
    pid, pgid, sid = _spawn()
    assert pgid == pid and sid == pid


def test_the_option_reaches_the_run_options() -> None:
    options = parse(["--separate-sessions", "--scenarios", "bare"])
    assert options is not None and options.separate_sessions
    options = parse(["--scenarios", "bare"])
    assert options is not None and not options.separate_sessions
