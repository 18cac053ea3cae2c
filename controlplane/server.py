"""The server ``gatehouse run`` starts: Granian's multi-process server with BlackSheep
workers on uvloop, and a drain phase between SIGTERM and the end of accept.

Granian forks the workers from this process and each builds its own application
(``controlplane.worker:create_app``).
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any

from controlplane.config.loader import LoadedConfig
from controlplane.lifecycle import begin_drain


def make_server(loaded: LoadedConfig, run_dir: Path) -> Any:
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server.mp import MPServer

    server = loaded.gateway.server
    drain_delay = server.drain_delay

    class GatehouseServer(MPServer):
        """Granian's multi-process server, with a drain phase before accept stops."""

        _draining = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self._draining or drain_delay <= 0:
                begin_drain(run_dir)
                super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]
                return
            self._draining = True
            begin_drain(run_dir)
            print(f"gatehouse: draining for {drain_delay:g}s before closing listeners", file=sys.stderr)
            stop = super().signal_handler_interrupt
            timer = threading.Timer(drain_delay, stop)
            timer.daemon = True
            timer.start()

    return GatehouseServer(
        "controlplane.worker:create_app",
        address=server.host,
        port=server.port,
        interface=Interfaces.ASGI,
        workers=server.workers,
        loop=Loops.uvloop,
        factory=True,
        backlog=server.backlog,
        backpressure=server.backpressure,
        http1_settings=HTTP1Settings(max_buffer_size=max(server.max_header_bytes + server.max_uri_bytes, 65_536)),
        respawn_failed_workers=server.respawn_failed_workers,
        respawn_interval=1.0,
        workers_kill_timeout=math.ceil(server.shutdown_grace),
        log_access=False,
    )
