"""Drive one feature set of the gateway in process and print its CPU time per request.

    python -m bench.inprocess full                      # 32,000 requests, 16 concurrent callers
    python -m bench.inprocess limiter --requests 4000 --callers 64

The app is the harness's scenario configuration (bench/harness/scenarios.py) built with
``controlplane.worker.build_app``, driven through ASGI on uvloop against the in-process upstream
(bench/support/fixed_upstream.py), with a private redis-server where the features need
one. No Granian, no load generator: what is left is the gateway's own work, the upstream's
and the loopback sockets between them, which makes two builds comparable on a noisy host.
It uses the compiled hot path when a current build is present (``GATEHOUSE_NATIVE``).

For instruction counts, run it twice under callgrind and subtract, so that start-up and
shutdown cancel out (docs/performance.md, *Measuring in process*)::

    valgrind --tool=callgrind --callgrind-out-file=small.out python -m bench.inprocess full --requests 800
    valgrind --tool=callgrind --callgrind-out-file=large.out python -m bench.inprocess full --requests 4000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import uvloop

from bench.harness.scenarios import FULL, Features
from bench.support.asgi import request
from bench.support.fixed_upstream import FixedUpstream
from bench.support.gateway import scenario_context, serving
from hotpath.context import Header
from tests.support.processes import RedisServer

VARIANTS: dict[str, Features] = {
    "bare": Features(),
    "jwt": Features(auth=True),
    "limiter": Features(rate_limit="api_key"),
    "jwt-rate-limit": Features(auth=True, rate_limit="user"),
    "metrics-log": Features(metrics=True, access_log=True),
    "full": FULL,
    "cache-hit": Features(cache=True),
}
HEADERS: list[Header] = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"application/json"),
]


@dataclass(frozen=True, slots=True)
class Measured:
    requests: int
    cpu_s: float
    wall_s: float

    def line(self, variant: str) -> str:
        per = 1e6 / self.requests
        return (f"{variant}: {self.requests} requests, cpu {self.cpu_s * per:.1f} us/request, "
                f"wall {self.wall_s * per:.1f} us/request")


def drive(variant: str, requests: int, callers: int) -> Measured:
    """``requests`` (rounded down to a multiple of ``callers``) after one checked request
    (``serving``)."""
    features = VARIANTS[variant]
    loop = uvloop.new_event_loop()
    redis = RedisServer() if features.needs_redis() else None
    upstream = FixedUpstream()
    try:
        loop.run_until_complete(upstream.start())
        with (
            scenario_context(upstream.url, redis.url if redis else None) as ctx,
            serving(loop, features, ctx, HEADERS) as (app, scope),
        ):
            each = requests // callers

            async def caller() -> None:
                for _ in range(each):
                    out = await request(app, scope)
                    if out.status != 200:
                        raise RuntimeError(f"{variant}: a request got {out.status}: {out.body[:200]!r}")

            async def run() -> None:
                await asyncio.gather(*(caller() for _ in range(callers)))

            cpu, wall = time.process_time(), time.perf_counter()
            loop.run_until_complete(run())
            return Measured(each * callers, time.process_time() - cpu, time.perf_counter() - wall)
    finally:
        loop.run_until_complete(upstream.close())
        loop.close()
        if redis is not None:
            redis.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--requests", type=int, default=32_000)
    parser.add_argument("--callers", type=int, default=16)
    args = parser.parse_args(argv)
    if args.callers < 1 or args.requests < args.callers:
        parser.error("--requests must be at least --callers, and --callers at least 1")
    print(drive(args.variant, args.requests, args.callers).line(args.variant), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
