"""Load generators and the counters read around each run.

- ``wrk`` (closed loop: ``-c`` connections each with one request in flight) finds the
  maximum throughput. A Lua ``done`` hook prints exact percentiles as JSON, so nothing is
  parsed from its human-readable table.
- ``h2load --h1 --rps`` offers a fixed rate for the latency figures. Its per-request log
  gives the percentiles. h2load paces each connection separately, so a connection whose
  previous request is still in flight sends late; the harness spreads the rate over many
  connections (each far slower than the latency it measures) and reports the rate actually
  achieved, flagging a run that fell short of the offer, so a stall cannot hide.
- Redis ``INFO`` and ``/proc`` CPU times are read before and after each run.

Every generator gets a fixed duration and a subprocess timeout, and only loopback URLs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FixedRate:
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
    shortfall: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lua_quote(value: str) -> str:
    return "[==[" + value + "]==]"


def wrk_script(headers: dict[str, str], rotate: tuple[str, str, list[str]] | None, path: str) -> str:
    """A wrk script: fixed headers, optionally one header rotating over prepared values
    (many callers: tokens of different users), and a JSON summary at the end."""
    lines = ["local counter = 0"]
    for name, value in headers.items():
        # Spaces matter: "[[" would open a Lua long string.
        lines.append(f"wrk.headers[ {_lua_quote(name)} ] = {_lua_quote(value)}")
    if rotate is not None:
        name, prefix, values = rotate
        lines.append("local requests = {}")
        lines.append("local values = {" + ", ".join(_lua_quote(v) for v in values) + "}")
        # Prepared once per thread: request() only picks one, so wrk's own cost stays flat.
        lines.append("function init(args)")
        lines.append("  for i, v in ipairs(values) do")
        lines.append(
            f"    requests[i] = wrk.format('GET', {_lua_quote(path)}, "
            f"{{[ {_lua_quote(name)} ] = {_lua_quote(prefix)} .. v}})"
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
) -> Throughput:
    require_loopback(url)
    path = urlsplit(url).path or "/"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="gh-wrk-", delete=False) as fh:
        fh.write(wrk_script(headers or {}, rotate, path))
        script = fh.name
    seconds = max(1, round(duration))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    finally:
        os.unlink(script)
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
) -> FixedRate:
    """``rate`` requests/s spread over connections of ``per_connection_rps`` each."""
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
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60, check=False)
        if out.returncode != 0 and not log.exists():
            detail = (out.stderr or out.stdout).strip()[:500]
            raise LoadError(f"h2load failed (exit {out.returncode}): {detail}")
        latencies: list[int] = []
        non_2xx = 0
        with open(log) as fh:
            for line in fh:
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                status = int(parts[1])
                if not 200 <= status < 300:
                    non_2xx += 1
                latencies.append(int(parts[2]))
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out.stdout)
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out.stdout)
    achieved = float(finished.group(3)) if finished else len(latencies) / duration
    latencies.sort()

    def ms(q: float) -> float:
        return round(_percentile(latencies, q) / 1000, 3)

    return FixedRate(
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
        """Every command's calls, script calls, and the server's network reads."""
        text = self._info()
        snap: dict[str, int] = {"commands": 0, "scripts": 0, "reads": 0}
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
            elif line.startswith("total_reads_processed:"):
                snap["reads"] = int(line.split(":", 1)[1])
        return snap


def redis_delta(before: dict[str, int], after: dict[str, int], requests: int) -> dict[str, float]:
    """Per-request Redis cost. ``round_trips`` counts the server's socket reads (a pipeline
    or one multi-decision script call arriving together is one), less the harness's own
    INFO; ``commands`` counts every command including those run inside scripts."""
    if requests <= 0:
        return {"round_trips_per_request": 0.0, "script_calls_per_request": 0.0, "commands_per_request": 0.0}
    reads = after["reads"] - before["reads"] - 1  # the "after" INFO itself was one read
    return {
        "round_trips_per_request": round(max(0, reads) / requests, 4),
        "script_calls_per_request": round((after["scripts"] - before["scripts"]) / requests, 4),
        "commands_per_request": round((after["commands"] - before["commands"]) / requests, 4),
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


def tool_available(name: str) -> bool:
    return shutil.which(name) is not None
