"""Make sure the external tools are installed (Debian packages), installing what is missing.

Installing needs root and apt-get; otherwise the harness stops with the command to run.
While it installs, a temporary ``policy-rc.d`` keeps Debian from starting the packaged
nginx or redis-server services (they would listen on public ports); the harness starts
its own instances on loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# command -> Debian package that provides it
TOOLS = {"nginx": "nginx", "wrk": "wrk", "h2load": "nghttp2-client", "redis-server": "redis-server",
         "redis-cli": "redis-tools"}
POLICY_RC = Path("/usr/sbin/policy-rc.d")


class ToolsMissing(RuntimeError):
    pass


def missing(commands: tuple[str, ...] = tuple(TOOLS)) -> dict[str, str]:
    return {cmd: TOOLS[cmd] for cmd in commands if shutil.which(cmd) is None}


def ensure(install: bool = True, *, h2load: bool = False) -> None:
    """Install what is missing; h2load only when it is the chosen fixed-rate generator."""
    commands = tuple(c for c in TOOLS if c != "h2load" or h2load)
    need = missing(commands)
    if not need:
        return
    packages = sorted(set(need.values()))
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolsMissing(f"missing {', '.join(sorted(need))}; install them with: {command}")
    print(f"harness: installing {', '.join(packages)} (Debian packages)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    placed = False
    if not POLICY_RC.exists():
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
        placed = True
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                       check=True, env=env, timeout=600)
    finally:
        if placed:
            POLICY_RC.unlink(missing_ok=True)
    still = missing(commands)
    if still:
        raise ToolsMissing(f"still missing after install: {', '.join(sorted(still))}")


def ensure_py_spy(install: bool = True) -> str:
    """The py-spy binary, pip-installed into this environment on first use (for --profile)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found:
        return found
    if not install:
        raise ToolsMissing(f"py-spy is missing; install it with: {sys.executable} -m pip install py-spy")
    print("harness: installing py-spy (pip) for --profile", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=300)
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise ToolsMissing("py-spy is still missing after pip install")
    return found
