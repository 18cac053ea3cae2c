"""Real processes for integration tests: redis-server, upstream servers, the gateway.

Every process binds a free port chosen here, never a default one, so a Redis or server
that happens to run on the machine is never touched. Each helper waits until its
process answers and stops it (and its children) on close.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_APP = "tests.support.upstream_app:app"

# Each helper process gets a process group of its own, so stopping it reaches its children,
# but stays in the caller's session. A new session (setsid) also puts a process in a
# scheduler autogroup of its own (Linux CONFIG_SCHED_AUTOGROUP): on a 2-core box shared with
# the load generator that alone cost Granian 25-30% of its throughput, while nginx stayed
# within its run-to-run spread (docs/performance.md). The load harness sets this to measure
# that layout on purpose.
SEPARATE_SESSIONS = False

# How gateways started here load the hot path (hotpath/native): interpreted, unless
# GATEHOUSE_TESTS_NATIVE_DIR names a native build, which every gateway then must use
# (scripts/test.sh runs the integration tests once more that way). The load harness
# replaces this with its --native choice.
TESTS_NATIVE_DIR_ENV = "GATEHOUSE_TESTS_NATIVE_DIR"
NATIVE_ENV: dict[str, str] = (
    {"GATEHOUSE_NATIVE": "require", "GATEHOUSE_NATIVE_DIR": os.environ[TESTS_NATIVE_DIR_ENV]}
    if os.environ.get(TESTS_NATIVE_DIR_ENV)
    else {"GATEHOUSE_NATIVE": "off"}
)


def spawn_group() -> dict[str, Any]:
    """Popen arguments placing a helper in its own process group (and session, if asked)."""
    return {"start_new_session": True} if SEPARATE_SESSIONS else {"process_group": 0}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class RedisServer:
    """A private redis-server on a free port, with nothing persisted."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test.sh installs it)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="gh-redis-")
        self._args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self.dir, "--daemonize", "no", *extra_args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **spawn_group()
        )
        wait_for_port(self.port, proc=self.proc)

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()

    def kill(self) -> None:
        """SIGKILL: the abrupt failure a crashed Redis presents."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A real Redis Cluster of N masters (no replicas), each a redis-server on a free port."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for i in range(masters):
                self.nodes.append(RedisServer(
                    port=_cluster_port(),
                    extra_args=("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
                                "--cluster-node-timeout", "2000"),
                ))
            self._form()
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _form(self) -> None:
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                       capture_output=True, check=True, timeout=60)
        # Every node, not just the first: until gossip reaches a node it answers CLUSTERDOWN,
        # and a test's first call may land on exactly that node.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes):
                return
            time.sleep(0.2)
        raise TimeoutError("redis cluster did not reach cluster_state:ok")

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


class Upstream:
    """The test upstream (tests/support/upstream_app.py) under Granian, on a free port."""

    def __init__(self, workers: int = 1, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="gh-upstream-", suffix=".log", delete=False)  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", str(workers), "--no-ws", "--log-level", "warning", UPSTREAM_APP],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, **spawn_group(),
            env={**os.environ, **(env or {})},
        )
        wait_for_port(self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, **settings: Any) -> None:
        """Change behaviour: mode=ok|fail|hang|slow, status=..., delay=... (see upstream_app)."""
        httpx.post(f"{self.url}/_control", json=settings, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/_stats", timeout=5).json()
        return data

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset", timeout=5).raise_for_status()

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.log.close()


class Gateway:
    """``gatehouse run`` with a config written from a dict, under Granian with N workers."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        expect_failure: bool = False,
        stdout_pipe: bool = False,
        files: Mapping[str, str] | None = None,
    ) -> None:
        """``stdout_pipe``: the gateway's stdout is a pipe drained into the log by ``cat``,
        as a container runtime drains it, instead of the log file itself. ``files``: written
        beside the config file first (relative path -> text), for files the config names."""
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gh-gateway-"))
        for relative, text in (files or {}).items():
            target = self.dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.config_path = self.dir / "gatehouse.yaml"
        cfg = dict(config)
        server = dict(cfg.get("server", {}))
        server.setdefault("host", "127.0.0.1")
        server["port"] = self.port
        server["workers"] = workers
        cfg["server"] = server
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = self.dir / "gateway.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEHOUSE_", "REDIS_URL"))}
        full_env.update(NATIVE_ENV)
        full_env.update(env or {})
        self._drain: subprocess.Popen[bytes] | None = None
        out: Any = self._log
        if stdout_pipe:
            self._drain = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=self._log, **spawn_group())
            out = self._drain.stdin
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.cli", "run", "-c", str(self.config_path)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, **spawn_group(), env=full_env,
        )
        if self._drain is not None and self._drain.stdin is not None:
            self._drain.stdin.close()  # the gateway holds the only write end: cat ends with it
        if expect_failure:
            self.proc.wait(ready_timeout)
            return
        self.wait_ready(ready_timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def terminate(self) -> None:
        """SIGTERM to the main process only, as Kubernetes sends it."""
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=30)
        if self._drain is not None:
            try:
                self._drain.wait(5)
            except subprocess.TimeoutExpired:
                stop_process_group(self._drain)
        self._log.close()


@contextlib.contextmanager
def running(obj: Any) -> Iterator[Any]:
    try:
        yield obj
    finally:
        obj.stop()
