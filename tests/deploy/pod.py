"""Start the gateway the way its container does, outside a container.

No Docker engine is needed: the image's ENTRYPOINT and CMD are run from this virtualenv
with the environment the pod gets (image ENV, ConfigMaps, Secrets, the CPU-derived worker
count) and the overlay's mounted ConfigMap as the config file. Only what a test machine
must change is changed: listen on 127.0.0.1 and free ports instead of 8080/8081, point
Redis and the services at test processes, use private directories for the two emptyDir
volumes, and find the compiled hot path (which the image builds in place and requires)
in the test run's build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.deploy.manifests import EXTERNAL_SECRETS, Dockerfile, Manifests, exec_form, mounted_config, pod_environment
from tests.support.processes import free_port

VENV_BIN = Path(sys.executable).parent


class DeployedPod:
    def __init__(
        self,
        m: Manifests,
        dockerfile: Dockerfile,
        *,
        redis_url: str,
        service_urls: dict[str, str],
        native_dir: Path,
        ready_timeout: float = 30.0,
    ) -> None:
        self.manifests = m
        self.port = free_port()
        self.admin_port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="gh-pod-"))
        self.tmp = self.root / "tmp"  # the "tmp" emptyDir
        self.metrics_dir = self.root / "prometheus"  # the "prometheus-multiproc" emptyDir
        self.workdir = self.root / "workdir"  # stands in for the image's read-only WORKDIR
        for d in (self.tmp, self.metrics_dir, self.workdir):
            d.mkdir()
        _, text = mounted_config(m)
        config = yaml.safe_load(text)
        config["admin"]["port"] = self.admin_port
        self.config_path = self.root / "gatehouse.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        env = pod_environment(m, dockerfile.final.env(), EXTERNAL_SECRETS)
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": str(self.workdir),
                "GATEHOUSE_HOST": "127.0.0.1",
                "GATEHOUSE_PORT": str(self.port),
                "REDIS_URL": redis_url,
                "TMPDIR": str(self.tmp),
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "POD_NAME": "gatehouse-test-pod",
                "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=gatehouse-test-pod",
                "GATEHOUSE_NATIVE_DIR": str(native_dir),
                **{f"{name.upper()}_SERVICE_URL": url for name, url in service_urls.items()},
            }
        )
        self.env = env
        self.workers = int(env["GATEHOUSE_WORKERS"])
        entrypoint = exec_form(dockerfile.final.last("ENTRYPOINT") or "")
        cmd = exec_form(dockerfile.final.last("CMD") or "")
        cmd[cmd.index("--config") + 1] = str(self.config_path)
        self.argv = [str(VENV_BIN / entrypoint[0]), *entrypoint[1:], *cmd]
        self.log_path = self.root / "pod.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def probe_url(self, probe: str) -> str:
        """The URL the kubelet would ask for this probe of the gateway container."""
        get: dict[str, Any] = self.manifests.container[probe]["httpGet"]
        return f"{self.url}{get['path']}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.probe_url("readinessProbe"), timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False)
        return [self.proc.pid, *(int(p) for p in out.stdout.split())]

    def terminate(self) -> None:
        """What the kubelet sends after the preStop hook: SIGTERM to PID 1 only."""
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def writable_files(pid: int) -> list[str]:
    """Regular files the process holds open for writing, stdio excepted."""
    found: list[str] = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        if int(fd.name) <= 2:
            continue
        try:
            target = os.readlink(fd)
            flags = int(
                next(ln for ln in (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().splitlines()
                     if ln.startswith("flags:")).split()[1],
                8,
            )
        except (FileNotFoundError, StopIteration):
            continue  # closed meanwhile
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")) and flags & os.O_ACCMODE:
            found.append(target)
    return found
