"""Load generators and the counters read around each run.

- ``wrk`` (closed loop: ``-c`` connections each with one request in flight) finds the
  maximum throughput. A Lua ``done`` hook prints exact percentiles as JSON, so nothing is
  parsed from its human-readable table.
- ``bench.harness.openloop`` (our own, the default) offers a fixed rate for the latency
  figures: requests start on a uniform schedule and each latency counts from when its
  request was due, so a stall shows in the percentiles (see its docstring for why).
- ``h2load --h1 --rps`` is the alternative (``--generator h2load``). It was measured
  unsuitable for tail latency here: the per-connection timers of all its connections fire
  together, so the offered rate arrives in bursts (40 ms pauses between request starts at
  any rate), and a late connection times its next request from when it was sent. The
  harness reports that pause (``max_start_gap_ms``) with its figures.
- Redis ``INFO`` and ``/proc`` CPU times are read before and after each run.

Every generator gets a fixed duration and a subprocess timeout, and only loopback URLs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MARK = "GATEHOUSE_WRK_RESULT "


class LoadError(RuntimeError):
    """A generator failed or printed nothing usable."""


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise LoadError(f"refusing to send load to {host!r}: the harness only targets loopback")


@dataclass
class Throughput:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    # CPU the generator itself used: it shares the machine with what it measures.
    generator_cpu_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FixedRate:
    generator: str
    offered_rps: float
    achieved_rps: float
    requests: int
    failed: int
    non_2xx: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    connections: int
    # Longest pause between two consecutive request starts. At thousands of requests/s it
    # is a fraction of a millisecond unless every connection was stuck waiting: then the
    # pause is time the generator could not send, and latency samples are missing for it.
    max_start_gap_ms: float | None = None
    # openloop only: the longest a due request waited for the generator's own loop, and
    # the most requests waiting for a connection at once.
    max_send_lag_ms: float | None = None
    max_queued: int | None = None
    generator_cpu_s: float = 0.0
    shortfall: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lua_quote(value: str) -> str:
    return "[==[" + value + "]==]"


def wrk_script(
    headers: dict[str, str], rotate: tuple[str, str, list[str]] | None, path: str, body: str | None = None
) -> str:
    """A wrk script: fixed headers, optionally one header rotating over prepared values
    (many callers: tokens of different users), optionally a POST of one body, and a JSON
    summary at the end."""
    lines = ["local counter = 0"]
    for name, value in headers.items():
        # Spaces matter: "[[" would open a Lua long string.
        lines.append(f"wrk.headers[ {_lua_quote(name)} ] = {_lua_quote(value)}")
    if body is not None:
        lines.append('wrk.method = "POST"')
        lines.append(f"wrk.body = {_lua_quote(body)}")
    if rotate is not None:
        name, prefix, values = rotate
        lines.append("local requests = {}")
        lines.append("local values = {" + ", ".join(_lua_quote(v) for v in values) + "}")
        # Prepared once per thread: request() only picks one, so wrk's own cost stays flat.
        lines.append("function init(args)")
        lines.append("  for i, v in ipairs(values) do")
        # wrk.format takes this table instead of wrk.headers: the fixed headers go in too.
        fixed = "".join(f"[ {_lua_quote(k)} ] = {_lua_quote(v)}, " for k, v in headers.items() if k != name)
        lines.append(
            f"    requests[i] = wrk.format(nil, {_lua_quote(path)}, "
            f"{{{fixed}[ {_lua_quote(name)} ] = {_lua_quote(prefix)} .. v}})"
        )
        lines.append("  end")
        lines.append("end")
        lines.append("function request()")
        lines.append("  counter = counter % #requests + 1")
        lines.append("  return requests[counter]")
        lines.append("end")
    lines.append(
        """function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,'
    .. '"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    '"""
        + _MARK
        + """', summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end"""
    )
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    rotate: tuple[str, str, list[str]] | None = None,
    body: str | None = None,
) -> Throughput:
    """``body``: POST it (ASCII text; give its content-type in ``headers``) instead of a GET."""
    require_loopback(url)
    path = urlsplit(url).path or "/"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="gh-wrk-", delete=False) as fh:
        fh.write(wrk_script(headers or {}, rotate, path, body))
        script = fh.name
    seconds = max(1, round(duration))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url]
    cpu0 = _children_cpu()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    finally:
        os.unlink(script)
    generator_cpu = round(_children_cpu() - cpu0, 2)
    for line in out.stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            secs = data["duration_us"] / 1e6
            return Throughput(
                requests=data["requests"],
                seconds=round(secs, 3),
                rps=round(data["requests"] / secs, 1) if secs else 0.0,
                p50_ms=data["p50"] / 1000,
                p90_ms=data["p90"] / 1000,
                p99_ms=data["p99"] / 1000,
                max_ms=data["max"] / 1000,
                non_2xx=data["status"],
                socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
                generator_cpu_s=generator_cpu,
            )
    raise LoadError(f"wrk printed no result (exit {out.returncode}): {out.stderr.strip()[:500]}")


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[idx])


def run_h2load(
    url: str,
    *,
    rate: float,
    duration: float,
    warmup: float,
    headers: dict[str, str] | None = None,
    per_connection_rps: float = 25.0,
    body: str | None = None,
) -> FixedRate:
    """``rate`` requests/s spread over connections of ``per_connection_rps`` each; ``body``
    is POSTed when given."""
    require_loopback(url)
    connections = max(1, round(rate / per_connection_rps))
    per_client = rate / connections
    with tempfile.TemporaryDirectory(prefix="gh-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        cmd = [
            "h2load", "--h1", "-t1", f"-c{connections}", f"--rps={per_client:.3f}",
            # h2load takes whole numbers with a unit suffix.
            f"-D{max(1, round(duration * 1000))}ms", f"--warm-up-time={max(1, round(warmup * 1000))}ms",
            f"--log-file={log}",
        ]
        if body is not None:
            data = Path(tmp) / "body"
            data.write_text(body, encoding="latin-1")
            cmd.append(f"--data={data}")
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        cpu0 = _children_cpu()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60, check=False)
        generator_cpu = round(_children_cpu() - cpu0, 2)
        if out.returncode != 0 and not log.exists():
            detail = (out.stderr or out.stdout).strip()[:500]
            raise LoadError(f"h2load failed (exit {out.returncode}): {detail}")
        latencies: list[int] = []
        starts: list[int] = []
        non_2xx = 0
        with open(log) as fh:
            for line in fh:
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                status = int(parts[1])
                if not 200 <= status < 300:
                    non_2xx += 1
                starts.append(int(parts[0]))
                latencies.append(int(parts[2]))
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out.stdout)
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out.stdout)
    achieved = float(finished.group(3)) if finished else len(latencies) / duration
    latencies.sort()
    starts.sort()
    max_gap = max((b - a for a, b in itertools.pairwise(starts)), default=0)

    def ms(q: float) -> float:
        return round(_percentile(latencies, q) / 1000, 3)

    return FixedRate(
        generator="h2load",
        offered_rps=rate,
        achieved_rps=round(achieved, 1),
        requests=len(latencies),
        failed=sum(int(g) for g in failed.groups()) if failed else 0,
        non_2xx=non_2xx,
        p50_ms=ms(0.50),
        p95_ms=ms(0.95),
        p99_ms=ms(0.99),
        p999_ms=ms(0.999),
        max_ms=round(latencies[-1] / 1000, 3) if latencies else 0.0,
        connections=connections,
        max_start_gap_ms=round(max_gap / 1000, 3),
        generator_cpu_s=generator_cpu,
        shortfall=achieved < 0.97 * rate,
    )


def run_openloop(
    url: str,
    *,
    rate: float,
    duration: float,
    warmup: float,
    headers: dict[str, str] | None = None,
    rotate: tuple[str, str, list[str]] | None = None,
    body: str | None = None,
) -> FixedRate:
    """``rate`` requests/s on a fixed schedule (bench/harness/openloop.py, its own process).

    Connections are capped like a load balancer's keep-alive pool (``rate / 50``, at least
    64: 100 at 5,000/s): a transient stall then queues requests (and counts the wait)
    instead of opening hundreds of new connections that a real client pool would not."""
    require_loopback(url)
    late = 5.0
    max_connections = max(64, int(rate / 50))
    with tempfile.TemporaryDirectory(prefix="gh-openloop-") as tmp:
        cmd = [sys.executable, "-m", "bench.harness.openloop", url, f"--rate={rate:g}", f"--duration={duration:g}",
               f"--warmup={warmup:g}", f"--timeout={late:g}", f"--max-connections={max_connections}"]
        for name, value in (headers or {}).items():
            if rotate is None or name.lower() != rotate[0].lower():
                cmd += ["-H", f"{name}: {value}"]
        if rotate is not None:
            name, prefix, values = rotate
            values_file = Path(tmp) / "values.txt"
            values_file.write_text("".join(f"{prefix}{v}\n" for v in values), encoding="latin-1")
            cmd += ["--rotate-header", name, "--rotate-file", str(values_file)]
        if body is not None:
            body_file = Path(tmp) / "body"
            body_file.write_text(body, encoding="latin-1")
            cmd += ["--body-file", str(body_file)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + late + 60,
                             check=False, cwd=Path(__file__).resolve().parents[2])
    if out.returncode != 0 or not out.stdout.strip():
        raise LoadError(f"openloop failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    achieved = float(data["achieved_rps"])
    return FixedRate(
        generator="openloop",
        offered_rps=rate,
        achieved_rps=achieved,
        requests=data["requests"],
        failed=data["failed"],
        non_2xx=data["non_2xx"],
        p50_ms=data["p50_ms"],
        p95_ms=data["p95_ms"],
        p99_ms=data["p99_ms"],
        p999_ms=data["p999_ms"],
        max_ms=data["max_ms"],
        connections=data["connections"],
        max_send_lag_ms=data["max_send_lag_ms"],
        max_queued=data["max_queued"],
        generator_cpu_s=data["generator_cpu_s"],
        shortfall=achieved < 0.97 * rate,
    )


class RedisInfo:
    """Counters from ``INFO`` over one persistent connection (its own reads are subtracted)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def _info(self) -> str:
        self._sock.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
        header = self._file.readline()
        if not header.startswith(b"$"):
            raise LoadError(f"unexpected INFO reply: {header[:80]!r}")
        size = int(header[1:])
        data = self._file.read(size + 2)
        return data[:size].decode()

    def snapshot(self) -> dict[str, int]:
        """Every command's calls, script calls and the time spent in them (us), the server's
        network reads and its CPU time (us)."""
        text = self._info()
        snap: dict[str, int] = {"commands": 0, "scripts": 0, "script_us": 0, "reads": 0, "cpu_us": 0}
        for line in text.splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line.partition(":")
                calls = int(rest.split(",", 1)[0].split("=", 1)[1])
                command = name[len("cmdstat_") :]
                if command == "info":
                    continue
                snap["commands"] += calls
                if command.startswith(("eval", "fcall")):
                    snap["scripts"] += calls
                    snap["script_us"] += int(rest.split("usec=", 1)[1].split(",", 1)[0])
            elif line.startswith("total_reads_processed:"):
                snap["reads"] = int(line.split(":", 1)[1])
            elif line.startswith(("used_cpu_user:", "used_cpu_sys:")):
                # The server's own threads (the main thread runs every script); it shares
                # the cores with the gateway, so its cost per request matters too.
                snap["cpu_us"] += round(float(line.split(":", 1)[1]) * 1e6)
        return snap


def redis_delta(before: dict[str, int], after: dict[str, int], requests: int) -> dict[str, float]:
    """Per-request Redis cost. ``round_trips`` counts the server's socket reads (a pipeline
    or one multi-decision script call arriving together is one), less the harness's own
    INFO; ``commands`` counts every command including those run inside scripts;
    ``cpu_ms_per_1k`` is the server's CPU per 1,000 requests."""
    if requests <= 0:
        return {"round_trips_per_request": 0.0, "script_calls_per_request": 0.0, "commands_per_request": 0.0,
                "cpu_ms_per_1k": 0.0}
    reads = after["reads"] - before["reads"] - 1  # the "after" INFO itself was one read
    return {
        "round_trips_per_request": round(max(0, reads) / requests, 4),
        "script_calls_per_request": round((after["scripts"] - before["scripts"]) / requests, 4),
        "commands_per_request": round((after["commands"] - before["commands"]) / requests, 4),
        "cpu_ms_per_1k": round((after["cpu_us"] - before["cpu_us"]) / requests, 1),
    }


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tool_available(name: str) -> bool:
    return shutil.which(name) is not None
