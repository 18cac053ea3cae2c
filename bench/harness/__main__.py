"""``python -m bench.harness [--quick] [--scenarios a,b] [--duration S] [--rates R,...]``

Starts Redis, an nginx upstream, nginx as the reference reverse proxy and the gateway (N
workers) on loopback, measures each scenario, prints a table of ratios to nginx and saves
JSON under bench/results/local/. Every process it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import scenarios
from bench.harness.model import Options
from bench.harness.run import main_run


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("rates must be positive")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in scenarios.ALL_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {', '.join(unknown)}; see --list")
    return names


def parse(argv: list[str] | None = None) -> Options | None:
    p = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up, 200 users: about 2 minutes")
    p.add_argument("--duration", type=float, help="seconds of each measured run (default 15)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up before each scenario (default 3)")
    p.add_argument("--rates", type=_floats, help="fixed offered rates for the latency runs (default 5000)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--generator", choices=("openloop", "h2load"), default="openloop",
                   help="fixed-rate generator (default openloop; see bench/harness/load.py)")
    p.add_argument("--workers", type=int, default=2, help="gateway workers (default 2)")
    p.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes (default 1)")
    p.add_argument("--scenarios", type=_names, help="comma-separated subset (default: all)")
    p.add_argument("--budget", type=float, help="seconds after which remaining scenarios are not run "
                   "(default 600 per round, quick 180 per round)")
    p.add_argument("--users", type=int, help="distinct tokens/API keys wrk rotates through (default 1000)")
    p.add_argument("--output", type=Path, help="JSON file (default bench/results/local/harness-<time>.json)")
    p.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    p.add_argument("--profile", action="store_true",
                   help="after measuring each gateway scenario, record a py-spy flame graph under wrk load "
                   "(installs py-spy with pip if missing)")
    p.add_argument("--separate-sessions", action="store_true",
                   help="start each server in a session of its own, so in its own scheduler autogroup apart "
                   "from the load generator (Granian loses 25-30%% of its throughput this way; nginx stays "
                   "within its spread)")
    p.add_argument("--native", choices=("auto", "off", "require"), default="auto",
                   help="how the gateway loads its hot path: compiled by mypyc when a matching build exists "
                   "(auto, the default), interpreted (off), or compiled or not at all (require); "
                   "`gatehouse native build` makes the build")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every scenario this many times (each round with fresh processes and its own "
                   "nginx reference) and print medians with their range; targets are judged by the majority "
                   "of rounds (default 1)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = p.parse_args(argv)
    for name, low in (("duration", 0.5), ("warmup", 0.0), ("connections", 1), ("workers", 1),
                      ("nginx_workers", 1), ("users", 1), ("budget", 10), ("rounds", 1)):
        value = getattr(a, name)
        if value is not None and value < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low:g}")
    if a.list:
        for s in scenarios.SCENARIOS:
            print(f"{s.name:<16} {s.title}: {s.measures}")
        print(f"{scenarios.CLIENTS_SCENARIO:<16} data-path client choice: the same proxy loop on pyreqwest, "
              "aiohttp and httpx")
        return None
    o = Options(duration=3.0, warmup=1.0, budget_s=180.0, users=200, quick=True) if a.quick else Options()
    for name, attr in (("duration", "duration"), ("warmup", "warmup"), ("rates", "rates"),
                       ("budget", "budget_s"), ("users", "users"), ("output", "output")):
        value = getattr(a, name)
        if value is not None:
            setattr(o, attr, value)
    o.connections, o.workers, o.nginx_workers = a.connections, a.workers, a.nginx_workers
    o.install = not a.no_install
    o.generator = a.generator
    o.profile = a.profile
    o.separate_sessions = a.separate_sessions
    o.native = a.native
    o.rounds = a.rounds
    if a.budget is None:
        o.budget_s *= a.rounds  # the default budget is per round; --budget covers the whole run
    if a.scenarios:
        # nginx-proxy is the reference every ratio needs.
        wanted = set(a.scenarios) | {"nginx-proxy"}
        o.scenarios = tuple(n for n in scenarios.ALL_NAMES if n in wanted)
    return o


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options is None:
        return 0
    return main_run(options)


if __name__ == "__main__":
    sys.exit(main())
