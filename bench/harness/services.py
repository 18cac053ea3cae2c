"""The processes a harness run starts: nginx (upstream and reference proxy), the client
proxies of the ``clients`` scenario, and Redis and the gateway (from tests/support).

Every process binds 127.0.0.1 on a port chosen free here, runs in its own session so the
whole group is stopped, and is registered with a ``Processes`` stack that stops all of
them on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.harness.scenarios import AUTHZ_PATH
from tests.support.processes import (
    REPO,
    Gateway,
    RedisServer,
    free_port,
    spawn_group,
    stop_process_group,
    wait_for_port,
)

# The reference upstream's answer: a fixed 37-byte JSON body.
UPSTREAM_BODY = '{"status":"ok","service":"upstream1"}'
OTLP_PATH = "/v1/traces"


class Processes:
    """Stops everything registered, newest first, exactly once."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []

    def add(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def stop(self, name: str) -> None:
        for i in range(len(self._stops) - 1, -1, -1):
            if self._stops[i][0] == name:
                _, fn = self._stops.pop(i)
                with contextlib.suppress(Exception):
                    fn()

    def stop_all(self) -> None:
        while self._stops:
            _, fn = self._stops.pop()
            with contextlib.suppress(Exception):
                fn()


class Nginx:
    """nginx in the foreground with its own prefix directory, pid file and logs."""

    def __init__(
        self, name: str, server_block: Callable[[Path], str], *, workers: int = 1, http_extra: str = ""
    ) -> None:
        binary = shutil.which("nginx")
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"gh-nginx-{name}-"))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir()
        d = self.dir
        # As root, nginx would switch workers to "nobody"; keep them as the invoking user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http_extra}
    server {{
{server_block(d)}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        self._stderr = open(d / "stderr.log", "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [binary, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, **spawn_group(),
        )

    def wait(self, port: int) -> None:
        try:
            wait_for_port(port, timeout=10, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            errors = self.errors()
            self.stop()  # nobody holds this object yet: stop it here
            raise RuntimeError(f"nginx {self.name} did not start: {errors}") from exc

    def errors(self) -> str:
        text = ""
        for log in ("stderr.log", "error.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / log).read_text(errors="replace")
        return text.strip()[-1000:]

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class NginxUpstream(Nginx):
    """The reference upstream: the fixed body on every path, and an OTLP/HTTP sink that
    accepts trace exports (and logs each one, so a run can show spans were exported)."""

    def __init__(self, workers: int = 1) -> None:
        self.port = free_port()
        port = self.port

        def block(d: Path) -> str:
            return f"""        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{UPSTREAM_BODY}';
        }}
        location = {OTLP_PATH} {{
            access_log {d}/otlp.log;
            default_type application/x-protobuf;
            return 200 '';
        }}
        location = {AUTHZ_PATH} {{
            access_log {d}/authz.log;
            default_type application/json;
            return 200 '{{}}';
        }}"""

        super().__init__("upstream", block, workers=workers)
        self.wait(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _lines(self, name: str) -> int:
        try:
            with open(self.dir / name, "rb") as fh:
                return sum(1 for _ in fh)
        except OSError:
            return 0

    def otlp_exports(self) -> int:
        """Trace export requests received so far."""
        return self._lines("otlp.log")

    def authz_calls(self) -> int:
        """Calls to the forward-auth scenario's authorization endpoint so far (nginx writes
        its access log as it answers)."""
        return self._lines("authz.log")


class NginxProxy(Nginx):
    """nginx as the reference reverse proxy: keep-alive upstream pool, and the same header
    work the gateway does (X-Forwarded-*, a request id)."""

    def __init__(self, upstream_port: int, workers: int = 1) -> None:
        self.port = free_port()
        http_extra = f"""    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}"""
        block = f"""        listen 127.0.0.1:{self.port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
            add_header X-Request-ID $request_id;
        }}"""
        super().__init__("proxy", lambda _: block, workers=workers, http_extra=http_extra)
        self.wait(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ClientProxy:
    """The client-choice proxy (bench/harness/client_proxy.py) under Granian."""

    def __init__(self, client: str, upstream_url: str, workers: int) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"gh-client-{client}-", suffix=".log", delete=False
        )
        env = {**os.environ, "BENCH_CLIENT": client, "BENCH_UPSTREAM": upstream_url}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers), "--no-ws",
             "--log-level", "warning", "--backpressure", "2048", "bench.harness.client_proxy:app"],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, **spawn_group(), env=env,
        )
        try:
            wait_for_port(self.port, timeout=20, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def start_gateway(config: dict[str, Any], *, workers: int, env: Mapping[str, str]) -> Gateway:
    """The gateway, ready; if it never gets ready, its processes are stopped before raising."""
    gateway = Gateway.__new__(Gateway)
    try:
        # stdout (where the access log goes) is a pipe, as under a container runtime.
        gateway.__init__(config, workers=workers, env=env, ready_timeout=40, stdout_pipe=True)  # type: ignore[misc]
    except BaseException as exc:
        if hasattr(gateway, "proc"):
            stop_gateway(gateway)
        if isinstance(exc, (RuntimeError, TimeoutError)):
            # Its message carries the whole gateway output; the end says why.
            raise RuntimeError(f"the gateway did not start: ...{str(exc)[-800:]}") from None
        raise
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    gateway.stop()
    shutil.rmtree(gateway.dir, ignore_errors=True)


__all__ = [
    "OTLP_PATH",
    "UPSTREAM_BODY",
    "ClientProxy",
    "Gateway",
    "NginxProxy",
    "NginxUpstream",
    "Processes",
    "RedisServer",
    "start_gateway",
    "stop_gateway",
]
