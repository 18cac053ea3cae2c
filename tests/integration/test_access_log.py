"""JSON access-log lines from a 2-worker gateway: one per request, complete, without secrets."""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Gateway, Upstream
from tests.support.prom import scrape, value

pytestmark = pytest.mark.integration

SECRETS = ("Bearer-eyJhbGciOi.secret-jwt", "sessioncookie-s3cr3t", "query-token-9f8e7d", "apikey-0a1b2c3d")


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("access") / "access.log"


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory, log_file: Path) -> Gateway:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {
        "access_log": {"output": str(log_file), "flush_interval": 0.05, "user_hash_key": "k3y-for-tests"},
    }
    return gateway_factory(cfg, workers=2)


def _lines(path: Path, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_bytes() if path.exists() else b""
        lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        if len(lines) >= want or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_one_json_line_per_request_without_secrets(gw: Gateway, log_file: Path) -> None:
    ids = []
    with httpx.Client(timeout=5) as c:
        for i in range(6):
            r = c.post(
                f"{gw.url}/api/echo/item?access_token={SECRETS[2]}&n={i}",
                content=b"x" * 100,
                headers={
                    "authorization": f"Bearer {SECRETS[0]}",
                    "cookie": f"session={SECRETS[1]}",
                    "x-api-key": SECRETS[3],
                    "x-correlation-id": f"corr-{i}",
                },
            )
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])
        missing = c.get(f"{gw.url}/nowhere?token={SECRETS[2]}")
        assert missing.status_code == 404
        ids.append(missing.headers["x-request-id"])
    lines = _lines(log_file, 7)
    raw = log_file.read_text()
    for secret in SECRETS:
        assert secret not in raw
    assert "authorization" not in raw.lower() and "cookie" not in raw.lower()
    by_id = {line["request_id"]: line for line in lines}
    assert set(ids) <= set(by_id), "a request has no access-log line"
    assert len([line for line in lines if line["request_id"] in ids]) == 7, "a request was logged twice"

    first = by_id[ids[0]]
    assert first["level"] == "info" and first["msg"] == "access"
    assert first["method"] == "POST" and first["path"] == "/api/echo/item"
    assert first["route"] == "api" and first["status"] == 200
    assert first["correlation_id"] == "corr-0"
    assert first["bytes_in"] == 100 and first["bytes_out"] > 0
    assert first["duration_ms"] >= first["upstream_ms"] > 0
    assert first["upstream"].endswith("/echo/item") and "?" not in first["upstream"]
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    for key in ("trace_id", "user", "rate_limit", "breaker", "cache", "client_ip"):
        assert key in first

    lost = by_id[ids[-1]]
    assert lost["status"] == 404 and lost["level"] == "warning" and lost["route"] is None
    assert lost["upstream"] is None


def test_level_threshold_and_text_format(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    out = tmp_path / "warn.log"
    cfg = basic_config(upstream.url)
    cfg["observability"] = {
        "access_log": {"output": str(out), "level": "warning", "format": "text", "flush_interval": 0.05}
    }
    gw = gateway_factory(cfg, workers=2)
    with httpx.Client(timeout=5) as c:
        for _ in range(3):
            assert c.get(f"{gw.url}/api/echo/fine").status_code == 200
        rid = c.get(f"{gw.url}/api/status/502").headers["x-request-id"]
    deadline = time.monotonic() + 10
    while rid not in (out.read_text() if out.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = out.read_text().splitlines()
    assert len(lines) == 1, lines
    assert f"request_id={rid}" in lines[0] and "status=502" in lines[0] and "level=error" in lines[0]


def test_a_stalled_output_drops_counted_lines_and_never_stalls_requests(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    fifo = tmp_path / "stalled-shipper"
    os.mkfifo(fifo)
    # A reader that never reads, like a log shipper that hung: the pipe fills and stays full.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        cfg = basic_config(upstream.url)
        cfg["observability"] = {
            "access_log": {"output": str(fifo), "flush_interval": 0.05, "max_queued_bytes": 4096},
        }
        gw = gateway_factory(cfg, workers=2)

        def client(n: int) -> list[int]:
            with httpx.Client(timeout=10) as c:
                return [c.get(f"{gw.url}/api/echo/stalled-{i}").status_code for i in range(n)]

        # About 400 lines of 450 bytes: more than a 64 kB pipe plus the queues of both workers.
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(client, [50] * 8) for s in batch]
        assert statuses == [200] * 400
        deadline = time.monotonic() + 10
        while (dropped := value(scrape(gw.url), "gatehouse_access_log_dropped_lines_total",
                                reason="queue_full")) == 0:
            assert time.monotonic() < deadline, "no drop was counted though the output never drained"
            time.sleep(0.05)
        assert 0 < dropped < 400
        # What did reach the pipe is whole lines: each chunk went out in one write within PIPE_BUF.
        data = bytearray()
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(reader, 65536):
                data += chunk
        lines = data.splitlines()
        assert lines and all(orjson.loads(line)["msg"] == "access" for line in lines)
        assert data.endswith(b"\n")
    finally:
        os.close(reader)
