"""An open-loop HTTP/1.1 load generator: requests start on a fixed schedule, whatever the
server does, and each latency is measured from the moment its request was *due*.

Why not h2load: ``h2load --rps`` paces each connection with its own timer, and the timers
of all connections start together, so "5,000/s over 200 connections" arrives as bursts of
200 requests every 40 ms (the harness measured pauses of 40 ms between request starts at
every rate); and a connection whose response is late sends its next request late and times
it from then (coordinated omission). Both hide or distort tail latency. Here:

- request *i* is due at ``start + i / rate``; the scheduler wakes every millisecond and sends
  every request that has come due, so arrivals are uniform at millisecond granularity;
- a due request takes an idle keep-alive connection, or opens a new one (up to
  ``--max-connections``), or waits in a queue: its latency includes that wait, so a stalled
  server shows up in the percentiles instead of in a lower request count;
- requests still unanswered ``--timeout`` seconds after the run count as timed out.

It runs as its own process (``python -m bench.harness.openloop URL --rate R --duration D``)
on uvloop with raw protocols, and prints one JSON object. Only loopback targets, GET (or
POST of one fixed body, ``--body-file``), responses framed by Content-Length (what the gateway and nginx send here).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time
from time import perf_counter
from typing import Any, cast
from urllib.parse import urlsplit

import uvloop

TICK = 0.001
# Timing uses perf_counter: uvloop's loop.time() only has millisecond resolution.


class _Conn(asyncio.Protocol):
    __slots__ = ("_buf", "_due", "_gen", "_need", "_status", "busy", "closed", "transport")

    def __init__(self, gen: Generator) -> None:
        self._gen = gen
        self._buf = bytearray()
        self._need = -1  # bytes of the whole response once the head is parsed
        self._status = 0
        self._due = 0.0
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, due: float) -> None:
        self._due = due
        self.busy = True
        assert self.transport is not None
        self.transport.write(self._gen.next_request())

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                at = head.find(b"\ncontent-length:")
                if at < 0:
                    self._gen.protocol_error(self, "response without content-length")
                    return
                stop = head.find(b"\r", at + 16)
                length = int(head[at + 16 : stop if stop > 0 else None])
                self._need = end + 4 + length
                self._status = int(head[9:12])
            if len(buf) < self._need:
                return
            status = self._status
            del buf[: self._need]
            self._need = -1
            self.busy = False
            self._gen.done(self, status, self._due)
            if not buf:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gen.lost(self)


class Generator:
    def __init__(self, url: str, rate: float, duration: float, warmup: float, headers: list[str],
                 max_connections: int, timeout: float, rotate: tuple[str, list[str]] | None = None,
                 body: bytes | None = None) -> None:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost") and not (parts.hostname or "").startswith("127."):
            raise SystemExit("openloop: only loopback targets are allowed")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = "".join(f"{h}\r\n" for h in headers)
        method = "GET" if body is None else "POST"
        if body is not None:
            extra += f"content-length: {len(body)}\r\n"
        base = f"{method} {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n{extra}"
        tail = body or b""
        # Prepared once: with a rotating header (tokens of many callers) one per value.
        if rotate is None:
            self.requests = [(base + "\r\n").encode("latin-1") + tail]
        else:
            name, values = rotate
            self.requests = [(base + f"{name}: {v}\r\n\r\n").encode("latin-1") + tail for v in values]
        self._next = 0
        self.rate = rate
        self.duration = duration
        self.warmup = warmup
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle: list[_Conn] = []
        self.queue: collections.deque[float] = collections.deque()
        self.open = 0
        self.opening = 0
        self.outstanding = 0
        self.latencies: list[float] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.max_queue = 0
        self.max_lag = 0.0
        self.measure_from = 0.0
        self.measure_end = 0.0
        self.measure_to = 0.0
        self.completed_in_window = 0
        self.finished = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def next_request(self) -> bytes:
        i = self._next
        self._next = (i + 1) % len(self.requests)
        return self.requests[i]

    # -- connections ------------------------------------------------------------------

    def _open_one(self) -> None:
        self.opening += 1
        task = self.loop.create_task(self.loop.create_connection(lambda: _Conn(self), self.host, self.port))
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[tuple[asyncio.BaseTransport, _Conn]]) -> None:
        self.opening -= 1
        if task.cancelled() or task.exception() is not None:
            self.errors += 1
            if self.queue:  # the request that asked for it keeps waiting for another
                self._maybe_open()
            return
        _, conn = task.result()
        self.open += 1
        self._release(conn)

    def _maybe_open(self) -> None:
        if self.open + self.opening < self.max_connections and self.opening < len(self.queue):
            self._open_one()

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            return
        if self.queue:
            conn.send(self.queue.popleft())
        else:
            self.idle.append(conn)

    # -- requests ---------------------------------------------------------------------

    def _dispatch(self, due: float) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(due)
            return
        self.queue.append(due)
        if len(self.queue) > self.max_queue:
            self.max_queue = len(self.queue)
        self._maybe_open()

    def done(self, conn: _Conn, status: int, due: float) -> None:
        now = perf_counter()
        if due >= self.measure_from:
            self.latencies.append(now - due)
            self.statuses[status] += 1
        if self.measure_from <= now <= self.measure_end:
            self.completed_in_window += 1
        self._finish_one()
        self._release(conn)

    def protocol_error(self, conn: _Conn, _reason: str) -> None:
        self.errors += 1
        if conn.transport is not None:
            conn.transport.close()

    def lost(self, conn: _Conn) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        elif conn.busy:  # it died with a request on it
            conn.busy = False
            self.errors += 1
            self._finish_one()
        if self.queue:
            self._maybe_open()

    def _finish_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.measure_to and perf_counter() >= self.measure_to:
            self.finished.set()

    async def run(self) -> dict[str, Any]:
        for _ in range(min(self.max_connections, max(4, int(self.rate * 0.005)))):
            self._open_one()
        await asyncio.sleep(0.05)
        start = perf_counter() + 0.01
        self.measure_from = start + self.warmup
        end = self.measure_end = self.measure_from + self.duration
        total = int((self.warmup + self.duration) * self.rate)
        sent = 0
        while sent < total:
            now = perf_counter()
            due_count = min(total, int((now - start) * self.rate) + 1)
            if due_count > sent:
                lag = now - (start + sent / self.rate)
                if lag > self.max_lag and start + sent / self.rate >= self.measure_from:
                    self.max_lag = lag
            while sent < due_count:
                self._dispatch(start + sent / self.rate)
                sent += 1
            await asyncio.sleep(TICK)
        self.measure_to = end
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), self.timeout)
        unanswered = self.outstanding
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        measured = len(self.latencies)
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            if not lat:
                return 0.0
            return round(lat[min(len(lat) - 1, max(0, round(q * (len(lat) - 1))))] * 1000, 3)

        non_2xx = sum(n for s, n in self.statuses.items() if not 200 <= s < 300)
        return {
            "offered_rps": self.rate,
            # Answers that arrived inside the measured window, per second of it.
            "achieved_rps": round(self.completed_in_window / self.duration, 1),
            "requests": measured,
            "failed": self.errors + unanswered,
            "non_2xx": non_2xx,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": round(lat[-1] * 1000, 3) if lat else 0.0,
            "connections": self.open,
            "max_queued": self.max_queue,
            "max_send_lag_ms": round(self.max_lag * 1000, 3),
        }


async def _main(args: argparse.Namespace, rotate: tuple[str, list[str]] | None,
                body: bytes | None = None) -> dict[str, Any]:
    gen = Generator(args.url, args.rate, args.duration, args.warmup, args.header or [], args.max_connections,
                    args.timeout, rotate, body)
    return await gen.run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness.openloop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, required=True, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent first and not measured")
    p.add_argument("--max-connections", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=5.0, help="wait for late answers after the run")
    p.add_argument("-H", "--header", action="append", help="'name: value', repeatable")
    p.add_argument("--rotate-header", help="a header whose value rotates over the lines of --rotate-file")
    p.add_argument("--rotate-file", help="one header value per line (e.g. 'Bearer <token>')")
    p.add_argument("--body-file", help="POST this file's bytes as every request's body (give its -H content-type)")
    args = p.parse_args(argv)
    if bool(args.rotate_header) != bool(args.rotate_file):
        p.error("--rotate-header and --rotate-file go together")
    if args.rate <= 0 or args.duration <= 0:
        p.error("rate and duration must be positive")
    rotate = None
    if args.rotate_header:
        with open(args.rotate_file, encoding="latin-1") as fh:
            rotate = (args.rotate_header, [line.rstrip("\n") for line in fh if line.strip()])
    t0 = time.process_time()
    body = None
    if args.body_file:
        with open(args.body_file, "rb") as fh:
            body = fh.read()
    result = uvloop.run(_main(args, rotate, body))
    result["generator_cpu_s"] = round(time.process_time() - t0, 2)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
