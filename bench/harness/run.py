"""One harness run: start the shared processes, measure every scenario, report, clean up.

Per scenario: start its target (nginx, the gateway from a generated config, or a client
proxy), confirm its features are active, warm it up, then measure maximum throughput with
wrk and latency at each fixed offered rate with the fixed-rate generator (openloop, or
h2load), reading Redis ``INFO`` and the
target's CPU time around each measurement. The target stops before the next one starts,
so scenarios never share the CPU with each other.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.harness import load, report, rounds, scenarios, services, tools
from bench.harness.model import Options, Result
from bench.harness.scenarios import Context, Scenario, Unavailable
from hotpath.redis.batcher import FAILED_LOG, OUTAGE_LOG
from plugins.rate_limit.backends.redis import PURPOSE
from tests.support import processes

# Where a run saves its JSON and profiles unless --output says otherwise; gitignored.
# Runs worth keeping are copied to bench/results/ with a date and a label.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "local"
# A generator pause this long at a fixed rate is worth a note next to the figures.
STALL_MS = 25.0


def _tokens(secret: str, users: int) -> list[str]:
    import jwt

    now = int(time.time())
    return [
        jwt.encode(
            {"sub": f"user-{i}", "tier": "pro", "scope": "orders:read", "iss": scenarios.JWT_ISSUER,
             "aud": scenarios.JWT_AUDIENCE, "iat": now, "exp": now + 6 * 3600},
            secret,
            algorithm="HS256",
        )
        for i in range(users)
    ]


def _hot_path(base_url: str) -> str:
    import httpx

    native = httpx.get(base_url + "/health", timeout=5).json().get("native") or {}
    return f"compiled ({native.get('modules')} modules)" if native.get("active") else "interpreted"


# What the batcher logs when decisions go to the in-process fallback instead of Redis.
FALLBACK_LOGS = tuple(line % PURPOSE for line in (OUTAGE_LOG, FAILED_LOG))


def fallback_line(log_text: str) -> str | None:
    """The first fallback episode the gateway logged in ``log_text``, if any."""
    for line in log_text.splitlines():
        if any(marker in line for marker in FALLBACK_LOGS):
            return line.strip()[:300]
    return None


def _require_redis_decisions(res: Result) -> None:
    """A limiter that fell back to its in-process copy (Redis unreachable, or slower than the
    command timeout under overload) answers just as fast and with the same headers, so the
    probes cannot tell. Each run records the fallback episodes the batcher logged during it
    (``fell_back``), and Redis's own counters show whether decisions reached it at all (each
    runs at least one command per limit in the script). Without valid maximum-throughput
    figures the scenario is not available; a fixed-rate run that fell back keeps its figures
    but is marked, and its targets count as failed."""
    at_max = res.redis_at_max if (res.throughput or {}).get("requests", 1) else None
    if res.fallback_at_max:
        raise Unavailable(f"rate limiter fell back to in-process decisions at max load: {res.fallback_at_max}")
    if at_max is not None and at_max["commands_per_request"] < 1:
        raise Unavailable(
            f"rate limiter not deciding in Redis at max load: {at_max['commands_per_request']:g} Redis commands "
            "per request (decisions fell back to the in-process limiter)"
        )
    for entry in res.fixed_rates:
        cost = entry.get("redis") if entry.get("requests", 1) else None  # nothing sent says nothing
        if cost is not None and cost["commands_per_request"] < 1 and not entry.get("fell_back"):
            entry["fell_back"] = f"{cost['commands_per_request']:g} Redis commands per request"
        if entry.get("fell_back"):
            res.notes.append(f"at {entry['offered_rps']:g}/s the rate limiter fell back to in-process decisions "
                             f"(its figures are not the scenario's): {entry['fell_back']}")


def _busy_fraction(seconds: float = 1.0) -> float:
    """Share of the machine's CPU in use (by anything) over ``seconds``."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return idle, sum(fields)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


class Harness:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.procs = services.Processes()
        self.results: list[Result] = []
        self.started = time.monotonic()
        self.redis: services.RedisServer | None = None
        self.redis_info: load.RedisInfo | None = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.profile_dir = (options.output.parent if options.output else RESULTS_DIR) / f"profiles-{stamp}"

    # -- lifecycle --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        tools.ensure(self.o.install, h2load=self.o.generator == "h2load")
        busy = _busy_fraction()
        upstream = services.NginxUpstream(workers=self.o.nginx_workers)
        self.procs.add("upstream", upstream.stop)
        self.upstream = upstream
        redis_needed = any(
            (n in scenarios.BY_NAME and scenarios.BY_NAME[n].features.needs_redis()) for n in self.o.scenarios
        )
        if redis_needed:
            self.redis = services.RedisServer()
            self.procs.add("redis", self.redis.stop)
            self.redis_info = load.RedisInfo(self.redis.port)
            self.procs.add("redis-info", self.redis_info.close)
        secret = secrets.token_urlsafe(48)
        self.ctx = Context(
            upstream_url=upstream.url,
            otlp_endpoint=upstream.url,
            redis_url=self.redis.url if self.redis else None,
            jwt_secret=secret,
            tokens=_tokens(secret, self.o.users),
            api_keys=[f"key-{i:05d}-{secrets.token_hex(6)}" for i in range(self.o.users)],
        )
        for name in self.o.scenarios:
            if name == scenarios.CLIENTS_SCENARIO:
                continue
            self.results.append(self._run_one(scenarios.BY_NAME[name]))
        clients: list[Result] = []
        if scenarios.CLIENTS_SCENARIO in self.o.scenarios:
            clients = self._run_clients()
        return report.build(self.o, self.results, clients, busy_before=busy, elapsed=self._elapsed())

    def close(self) -> None:
        self.procs.stop_all()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _over_budget(self) -> bool:
        return self._elapsed() > self.o.budget_s

    # -- one scenario ---------------------------------------------------------------

    def _run_one(self, sc: Scenario) -> Result:
        res = Result(sc.name, sc.title, sc.measures, against=sc.against, kind=sc.kind)
        if self._over_budget():
            res.status, res.reason = "not run", f"time budget of {self.o.budget_s:g}s spent"
            return res
        print(f"harness: {sc.name} ...", flush=True)
        try:
            if sc.kind == "nginx-direct":
                self._measure(res, self.upstream.url + scenarios.PATH, {},
                              cpu_pids=load.process_tree(self.upstream.proc.pid))
            elif sc.kind == "nginx-proxy":
                proxy = services.NginxProxy(self.upstream.port, workers=self.o.nginx_workers)
                self.procs.add("target", proxy.stop)
                self._measure(res, proxy.url + scenarios.PATH, {}, cpu_pids=load.process_tree(proxy.proc.pid))
            else:
                self._run_gateway(sc, res)
        except Unavailable as exc:
            res.status, res.reason = "not available", str(exc)
        except Exception as exc:
            res.status, res.reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.procs.stop("target")
        print(f"harness: {sc.name}: {res.status}{' (' + res.reason + ')' if res.reason else ''}", flush=True)
        return res

    def _run_gateway(self, sc: Scenario, res: Result) -> None:
        problems = scenarios.landing_problems(sc)
        if problems:
            raise Unavailable("; ".join(problems))
        config = scenarios.gateway_config(sc.features, self.ctx)
        scenarios.check_compiles(config, self.o.workers)
        gateway = services.start_gateway(config, workers=self.o.workers, env={})
        self.procs.add("target", lambda: services.stop_gateway(gateway))
        headers, rotate = self._credentials(sc)
        if sc.body is not None:
            headers = {**headers, "content-type": "application/json"}
        res.hot_path = _hot_path(gateway.url)
        target = scenarios.request_path(sc.features, self.ctx)
        probe = scenarios.Probe(gateway.url, headers, target, authz_calls=self.upstream.authz_calls)
        for check in sc.probes():
            check(probe)
        if sc.features.access_log:
            scenarios.wait_for_access_log(gateway.output)
        exports_before = self.upstream.otlp_exports()
        self._measure(res, gateway.url + target, headers, rotate=rotate,
                      cpu_pids=load.process_tree(gateway.proc.pid), redis=sc.features.needs_redis(),
                      log=gateway.output if sc.features.rate_limit else None, body=sc.body)
        if sc.features.rate_limit:
            _require_redis_decisions(res)
        if sc.features.tracing is not None:
            time.sleep(2.5)  # one export interval, so the last batch is counted
            exported = self.upstream.otlp_exports() - exports_before
            res.notes.append(f"{exported} OTLP trace exports received during the run")
            if exported == 0:
                raise Unavailable("tracing not active: no span export reached the OTLP sink")
        if sc.features.access_log:
            res.notes.append(f"{scenarios.access_log_lines(gateway.output())} access-log lines written")
        if self.o.profile:
            self._profile(sc.name, gateway.proc.pid, gateway.url + target, headers, rotate, res, sc.body)

    def _profile(
        self,
        name: str,
        pid: int,
        url: str,
        headers: dict[str, str],
        rotate: tuple[str, str, list[str]] | None,
        res: Result,
        body: str | None = None,
    ) -> None:
        """Collapsed stacks of every gateway process under wrk load (py-spy ``raw`` format, for
        flamegraph.pl, inferno or speedscope), plus a text summary of the hottest functions."""
        py_spy = tools.ensure_py_spy(self.o.install)
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{name}.folded"
        seconds = max(2, round(self.o.duration))
        proc = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "250",
             "--duration", str(seconds), "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            time.sleep(0.5)
            load.run_wrk(url, duration=seconds, connections=self.o.connections, headers=headers, rotate=rotate,
                         body=body)
            _, err = proc.communicate(timeout=seconds + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if out.exists():
            summary = self.profile_dir / f"{name}.txt"
            summary.write_text(profile_summary(out.read_text(errors="replace")))
            res.notes.append(f"profile (py-spy, under wrk load): {out} (hottest functions: {summary})")
        else:
            res.notes.append(f"profile failed: {err.decode(errors='replace').strip()[-300:]}")

    def _credentials(self, sc: Scenario) -> tuple[dict[str, str], tuple[str, str, list[str]] | None]:
        if sc.credentials == "token":
            return {"authorization": f"Bearer {self.ctx.tokens[0]}"}, ("authorization", "Bearer ", self.ctx.tokens)
        if sc.credentials == "api_key":
            return {"x-api-key": self.ctx.api_keys[0]}, ("x-api-key", "", self.ctx.api_keys)
        return {}, None

    # -- measurement ------------------------------------------------------------------

    def _measure(
        self,
        res: Result,
        url: str,
        headers: dict[str, str],
        *,
        cpu_pids: list[int],
        rotate: tuple[str, str, list[str]] | None = None,
        redis: bool = False,
        log: Callable[[], str] | None = None,
        body: str | None = None,
    ) -> None:
        """``log``: the gateway's output so far, to tell which runs the rate limiter fell back in.
        ``body``: POST it with every request instead of a GET."""
        o = self.o
        info = self.redis_info if redis else None
        mark = len(log()) if log else 0
        # Warm-up: pools fill, caches and the token cache fill; results discarded.
        load.run_wrk(url, duration=o.warmup, connections=o.connections, headers=headers, rotate=rotate, body=body)
        before = info.snapshot() if info else None
        cpu0 = load.cpu_seconds(cpu_pids)
        tp = load.run_wrk(url, duration=o.duration, connections=o.connections, headers=headers, rotate=rotate,
                          body=body)
        cpu1 = load.cpu_seconds(cpu_pids)
        res.throughput = tp.to_dict()
        if tp.requests:
            res.cpu_ms_per_1k = round((cpu1 - cpu0) * 1e6 / tp.requests, 1)
        if before is not None and info is not None:
            res.redis_at_max = load.redis_delta(before, info.snapshot(), tp.requests)
        if tp.non_2xx or tp.socket_errors:
            res.notes.append(f"max-throughput run: {tp.non_2xx} non-2xx responses, {tp.socket_errors} socket errors")
        if log is not None:
            text = log()
            res.fallback_at_max, mark = fallback_line(text[mark:]), len(text)
        for rate in o.rates:
            before = info.snapshot() if info else None
            if o.generator == "h2load":
                fr = load.run_h2load(url, rate=rate, duration=o.duration, warmup=min(1.0, o.warmup), headers=headers,
                                     body=body)
            else:
                fr = load.run_openloop(url, rate=rate, duration=o.duration, warmup=min(1.0, o.warmup),
                                       headers=headers, rotate=rotate, body=body)
            entry = fr.to_dict()
            if before is not None and info is not None:
                entry["redis"] = load.redis_delta(before, info.snapshot(), fr.requests)
            if log is not None:
                text = log()
                entry["fell_back"], mark = fallback_line(text[mark:]), len(text)
            res.fixed_rates.append(entry)
            if fr.shortfall:
                res.notes.append(f"at {rate:g}/s offered only {fr.achieved_rps:g}/s were achieved")
            if fr.max_start_gap_ms is not None and fr.max_start_gap_ms > STALL_MS:
                res.notes.append(
                    f"at {rate:g}/s h2load paused {fr.max_start_gap_ms:g} ms between request starts: its offered "
                    "load arrived in bursts"
                )
            if fr.max_send_lag_ms is not None and fr.max_send_lag_ms > STALL_MS:
                res.notes.append(
                    f"at {rate:g}/s the generator itself ran up to {fr.max_send_lag_ms:g} ms late (busy CPU); "
                    "that delay is counted in the latencies"
                )
            if fr.non_2xx or fr.failed:
                res.notes.append(f"at {rate:g}/s: {fr.non_2xx} non-2xx, {fr.failed} failed requests")

    # -- the data-path client choice ------------------------------------------------

    def _run_clients(self) -> list[Result]:
        from bench.harness.client_proxy import CLIENTS

        out: list[Result] = []
        for client in CLIENTS:
            res = Result(f"client-{client}", f"proxy loop on {client}",
                         "the same raw ASGI proxy loop under Granian, only the HTTP client differs",
                         against="nginx-proxy", kind="client")
            out.append(res)
            if self._over_budget():
                res.status, res.reason = "not run", f"time budget of {self.o.budget_s:g}s spent"
                continue
            print(f"harness: clients/{client} ...", flush=True)
            try:
                if client == "aiohttp":
                    import aiohttp  # noqa: F401
            except ImportError:
                res.status, res.reason = "not available", "aiohttp is not installed (pip install -e '.[test]')"
                continue
            try:
                proxy = services.ClientProxy(client, self.upstream.url, self.o.workers)
                self.procs.add("target", proxy.stop)
                o = self.o
                load.run_wrk(proxy.url + scenarios.PATH, duration=min(o.warmup, 2.0), connections=o.connections)
                cpu_pids = load.process_tree(proxy.proc.pid)
                cpu0 = load.cpu_seconds(cpu_pids)
                tp = load.run_wrk(proxy.url + scenarios.PATH, duration=o.duration, connections=o.connections)
                cpu1 = load.cpu_seconds(cpu_pids)
                res.throughput = tp.to_dict()
                if tp.requests:
                    res.cpu_ms_per_1k = round((cpu1 - cpu0) * 1e6 / tp.requests, 1)
                if tp.non_2xx or tp.socket_errors:
                    res.notes.append(f"{tp.non_2xx} non-2xx responses, {tp.socket_errors} socket errors")
            except Exception as exc:
                res.status, res.reason = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                self.procs.stop("target")
        return out


def profile_summary(folded: str, top: int = 25) -> str:
    """The functions with the most samples, by self time and by total time (inclusive)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        # py-spy's first frame names the process; a stack of only that frame is a sample
        # taken while no Python code ran (Granian's or pyreqwest's Rust, the kernel).
        leaf = frames[-1] if len(frames) > 1 else "(no Python frame: native code)"
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames[1:]):  # the first frame names the process
            total[frame] = total.get(frame, 0) + count
    if not samples:
        return "no samples\n"

    def table(counts: dict[str, int]) -> list[str]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [f"{100 * n / samples:6.1f}%  {frame}" for frame, n in ranked]

    return "\n".join(
        [f"{samples} samples", "", "self time:", *table(own), "", "total time (inclusive):", *table(total), ""]
    )


def main_run(options: Options) -> int:
    sessions_before = processes.SEPARATE_SESSIONS
    native_before = processes.NATIVE_ENV
    processes.SEPARATE_SESSIONS = options.separate_sessions
    processes.NATIVE_ENV = {"GATEHOUSE_NATIVE": options.native}

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    done: list[dict[str, Any]] = []
    try:
        for number in range(1, options.rounds + 1):
            # The budget covers the whole run: later rounds get what earlier ones left.
            left = options.budget_s - (time.monotonic() - started)
            if done and left <= 0:
                print(f"harness: time budget of {options.budget_s:g}s spent after {len(done)} round(s)")
                break
            if options.rounds > 1:
                print(f"harness: round {number} of {options.rounds}", flush=True)
            harness = Harness(replace(options, budget_s=max(left, 0.0)))
            try:
                data = harness.run()
            finally:
                harness.close()
            if options.rounds > 1:
                print(f"\nround {number} of {options.rounds}:")
            print(report.render(data))
            done.append(data)
    except tools.ToolsMissing as exc:
        print(f"harness: {exc}")
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; stopping every process it started")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        processes.SEPARATE_SESSIONS = sessions_before
        processes.NATIVE_ENV = native_before
    document = done[0]
    if options.rounds > 1:
        summary = rounds.summarize(done)
        print(rounds.render(summary, options.rates[0] if options.rates else None))
        document = {"harness": done[0]["harness"], "rounds": done, "summary": summary}
    path = options.output or RESULTS_DIR / time.strftime("harness-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    report.save(document, path)
    print(f"harness: results saved to {path}")
    return 0
