"""What a harness run is asked to do (``Options``) and what it found per scenario (``Result``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import scenarios


@dataclass
class Options:
    duration: float = 15.0
    warmup: float = 3.0
    rates: tuple[float, ...] = (5000.0,)
    connections: int = 64
    workers: int = 2
    nginx_workers: int = 1
    scenarios: tuple[str, ...] = scenarios.ALL_NAMES
    install: bool = True
    budget_s: float = 600.0
    output: Path | None = None
    users: int = 1000
    quick: bool = False
    generator: str = "openloop"  # fixed-rate generator: "openloop" or "h2load"
    # Record a py-spy flame graph of the gateway workers per scenario, in a separate run
    # after the measured ones (sampling perturbs the figures, so never during them).
    profile: bool = False
    # Start each server in a session (so a scheduler autogroup) of its own, apart from the
    # load generator, instead of in the harness's: see tests/support/processes.py.
    separate_sessions: bool = False
    # GATEHOUSE_NATIVE for the gateway: "auto" (compiled when a matching build exists),
    # "off" (interpreted) or "require" (see hotpath/native).
    native: str = "auto"
    # Measure every scenario this many times, each round with fresh processes and its own
    # nginx reference, and summarize by medians (bench/harness/rounds.py).
    rounds: int = 1


@dataclass
class Result:
    name: str
    title: str
    measures: str
    status: str = "ok"  # ok | not available | failed | not run
    reason: str | None = None
    throughput: dict[str, Any] | None = None
    fixed_rates: list[dict[str, Any]] = field(default_factory=list)
    redis_at_max: dict[str, float] | None = None
    cpu_ms_per_1k: float | None = None
    # The fallback episode the gateway logged during the warm-up and max-load runs, if any.
    fallback_at_max: str | None = None
    notes: list[str] = field(default_factory=list)
    against: str | None = None
    kind: str = "gateway"
    # What the gateway's /health said it runs: "compiled (<n> modules)" or "interpreted".
    hot_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
