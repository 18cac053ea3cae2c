"""pytest-benchmark settings and shared fixtures for the hot-path microbenchmarks.

Two modes, never a skip:

- ``short`` (the default, and what CI runs as part of the whole suite): every benchmark
  still runs, calibrates and asserts its result, but for a few rounds only, so the suite
  stays fast and a broken hot path fails the run.
- ``full``: pytest-benchmark's own defaults (or whatever ``--benchmark-*`` flags say), for
  numbers worth saving and comparing.

The mode comes from ``--bench-mode``, else ``GATEHOUSE_BENCH_MODE``, else short when
``GATEHOUSE_BENCH_SHORT`` is set (scripts/test.sh sets it for CI), else ``full`` when a
flag that stores or compares results is given (``--benchmark-autosave``, ``--benchmark-save``,
``--benchmark-compare``, ``--benchmark-json``, ``--benchmark-only``), else ``short``.
Short mode applies through the ``benchmark`` marker, so it works however pytest was
started, and it never overrides a ``--benchmark-*`` timing flag given explicitly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from bench.support.fixed_upstream import FixedUpstream
from tests.support.processes import RedisServer

MODE_ENV = "GATEHOUSE_BENCH_MODE"
SHORT_ENV = "GATEHOUSE_BENCH_SHORT"
MODES = ("short", "full")
# Few rounds, no warmup: enough to exercise and assert every benchmark, not to rank them.
SHORT_SETTINGS: dict[str, Any] = {"max_time": 0.05, "min_rounds": 3, "warmup": False}
# pytest-benchmark's defaults for the same options; an option still at its default was not
# set by the user, so short mode may replace it.
_DEFAULTS: dict[str, Any] = {"max_time": 1.0, "min_rounds": 5, "warmup": False}
_STORING_FLAGS = (
    "benchmark_autosave",
    "benchmark_save",
    "benchmark_compare",
    "benchmark_json",
    "benchmark_only",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-mode",
        choices=MODES,
        default=None,
        help=f"microbenchmark mode: short (CI: few rounds) or full (env {MODE_ENV}; see bench/conftest.py)",
    )


def bench_mode(config: pytest.Config) -> str:
    chosen = config.getoption("bench_mode", default=None) or os.environ.get(MODE_ENV)
    if chosen:
        if chosen not in MODES:
            raise pytest.UsageError(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {chosen!r}")
        return str(chosen)
    if os.environ.get(SHORT_ENV, "").lower() in ("1", "true", "yes"):
        return "short"
    if any(config.getoption(flag, default=None) for flag in _STORING_FLAGS):
        return "full"
    return "short"


def _short_settings(config: pytest.Config) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name, value in SHORT_SETTINGS.items():
        current = config.getoption(f"benchmark_{name}", default=_DEFAULTS[name])
        if current == _DEFAULTS[name] or float(current) == float(_DEFAULTS[name]):
            settings[name] = value
    return settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if bench_mode(config) != "short":
        return
    settings = _short_settings(config)
    if not settings:
        return
    for item in items:
        if "benchmark" not in getattr(item, "fixturenames", ()):
            continue
        # pytest-benchmark reads only the closest marker: merge the test's own (its group,
        # or timing it chose deliberately) over the short settings, and put it first.
        own = item.get_closest_marker("benchmark")
        merged = {**settings, **(own.kwargs if own is not None else {})}
        item.add_marker(pytest.mark.benchmark(**merged), append=False)


def pytest_report_header(config: pytest.Config) -> str:
    return f"gatehouse bench mode: {bench_mode(config)}"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop event loop the benchmarks drive with ``run_until_complete`` (as Granian runs uvloop)."""
    ev = uvloop.new_event_loop()
    yield ev
    ev.run_until_complete(ev.shutdown_asyncgens())
    ev.close()


@pytest.fixture(scope="module")
def fixed_upstream(loop: asyncio.AbstractEventLoop) -> Iterator[FixedUpstream]:
    upstream = FixedUpstream()
    loop.run_until_complete(upstream.start())
    yield upstream
    loop.run_until_complete(upstream.close())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port (never 6379), shared by the benchmark session."""
    server = RedisServer()
    yield server
    server.stop()
