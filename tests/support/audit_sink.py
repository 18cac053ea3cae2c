"""A real HTTP audit sink for tests: records every batch it accepts.

It runs in a thread of the test process on a free port. ``status`` makes it refuse
batches, ``delay`` makes it slow, and ``pause``/``resume`` close and reopen the listening
socket so the gateway meets connection refused, as from a sink that is down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import free_port


class Batch:
    def __init__(self, received_at: float, authorization: str | None, events: list[dict[str, Any]]) -> None:
        self.received_at = received_at
        self.authorization = authorization
        self.events = events


class AuditSinkServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.batches: list[Batch] = []
        self.attempts = 0
        self.status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.resume()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    owner.attempts += 1
                    status, delay = owner.status, owner.delay
                if delay:
                    time.sleep(delay)
                if 200 <= status < 300:
                    events = json.loads(body)["events"]
                    with owner._lock:
                        owner.batches.append(Batch(time.monotonic(), self.headers.get("authorization"), events))
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for b in self.batches for e in b.events]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.05)
        raise TimeoutError(f"audit sink: condition not met after {timeout}s; have {len(self.events())} events")

    def clear(self) -> None:
        with self._lock:
            self.batches = []
            self.attempts = 0

    def pause(self) -> None:
        """Close the listening socket: new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def resume(self) -> None:
        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._server = server

    def stop(self) -> None:
        self.pause()
