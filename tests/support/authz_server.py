"""A real authorization service for forward-auth tests: an HTTP server on a free port, in a
thread of the test process, that records every call it gets.

Its answer depends on the path it is called on:

- ``/admins``: 200 with ``x-admin-id`` (the caller's subject) and ``x-admin-roles`` when
  the description's identity is one of ``admins``; 401 without an identity; 403 otherwise;
- ``/error``: 500;
- ``/slow``: 200 after ``slow_delay`` seconds;
- anything else: 404.

``delay`` makes every answer wait that long first (so concurrent requests overlap).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import free_port


class Call:
    def __init__(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.path = path
        self.body = body
        self.headers = headers


class AuthzServer:
    def __init__(self, admins: tuple[str, ...] = ("alice",)) -> None:
        self.admins = set(admins)
        self.calls: list[Call] = []
        self.delay = 0.0
        self.slow_delay = 2.0
        self._lock = threading.Lock()
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode("latin-1")}
                with owner._lock:
                    owner.calls.append(Call(self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                    delay = owner.delay
                if delay:
                    time.sleep(delay)
                status, headers = owner.decide(self.path, body)
                if self.path == "/slow":
                    time.sleep(owner.slow_delay)
                payload = json.dumps({"status": status}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the gateway gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def decide(self, path: str, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
        if path == "/admins":
            identity = body.get("identity")
            if identity is None:
                return 401, []
            if identity.get("subject") in self.admins:
                return 200, [("x-admin-id", identity["subject"]), ("x-admin-roles", "tenant-admin,auditor"),
                             ("x-not-kept", "1")]
            return 403, []
        if path == "/error":
            return 500, []
        if path == "/slow":
            return 200, [("x-admin-id", "late")]
        return 404, []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_to(self, path: str, where: Any = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path and (where is None or where(c.body))]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
