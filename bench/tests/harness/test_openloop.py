"""The open-loop generator (bench/harness/openloop.py) against a server under the test's control.

The server answers at once, except that it holds every answer during one half-second
window. An open-loop generator must show that stall in its percentiles (every request due
in the window waited); a closed-loop one would record only the few requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.processes import REPO

BODY = b'{"ok":true}'
STALL_START, STALL_END = 0.8, 1.3  # seconds after the first request


class StallingServer:
    def __init__(self) -> None:
        self.port = 0
        self.first: float | None = None
        self.served = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                now = time.monotonic()
                if self.first is None:
                    self.first = now
                elapsed = now - self.first
                if STALL_START <= elapsed < STALL_END:
                    await asyncio.sleep(STALL_END - elapsed)
                self.served += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def server() -> Iterator[StallingServer]:
    s = StallingServer()
    yield s
    s.stop()


def _openloop(port: int, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.harness.openloop", f"http://127.0.0.1:{port}/x", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, float] = json.loads(out.stdout)
    return result


def test_a_server_stall_shows_in_the_percentiles(server: StallingServer) -> None:
    r = _openloop(server.port, "--rate", "100", "--duration", "2", "--warmup", "0.2", "--max-connections", "4")
    # Every due request is sent and answered: the schedule does not bend to the server.
    assert r["requests"] == 200 and r["failed"] == 0 and r["non_2xx"] == 0
    # ~50 of 200 requests were due during the 0.5 s stall: counted from when they were due,
    # a good share of them waited a quarter of a second or more.
    assert r["p95_ms"] >= 150
    assert r["max_ms"] >= 350
    assert r["max_queued"] >= 10  # they waited for the 4 connections, in the generator's queue


def test_refuses_non_loopback_targets() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.harness.openloop", "http://192.0.2.1/", "--rate", "1", "--duration", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode != 0 and "loopback" in out.stderr


def test_a_body_is_posted_with_its_length() -> None:
    from bench.harness.openloop import Generator

    async def build() -> list[bytes]:
        gen = Generator("http://127.0.0.1:9/api", 10, 1, 0, ["content-type: application/json"], 4, 1,
                        ("authorization", ["Bearer a", "Bearer b"]), b'{"q": 1}')
        return gen.requests

    requests = asyncio.run(build())
    assert len(requests) == 2
    assert requests[0].startswith(b"POST /api HTTP/1.1\r\n")
    assert b"content-length: 8\r\n" in requests[0] and requests[0].endswith(b'authorization: Bearer a\r\n\r\n{"q": 1}')
