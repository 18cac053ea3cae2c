"""The core proxy through the real gateway (Granian, 2 workers) and a real upstream."""

from __future__ import annotations

import hashlib
import itertools
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Gateway, Upstream, free_port


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    config = basic_config(upstream.url, max_body_bytes=1_000_000)
    config["routes"].append({"name": "admin", "path": "/admin", "service": "backend", "match": "exact"})
    config["routes"].append(
        {"name": "uploads", "path": "/up", "service": "backend", "strip_prefix": True,
         "upstream_prefix": "/upload", "methods": ["POST", "PUT"], "max_body_bytes": 100_000_000}
    )
    config["routes"].append({"name": "big", "path": "/big", "service": "backend", "strip_prefix": True,
                             "upstream_prefix": "/bytes", "timeout": 60})
    config["services"]["backend"]["timeouts"] = {"connect": 1, "read": 2, "total": 5}
    config["server"] = {"max_uri_bytes": 2048, "max_header_bytes": 8192}
    return gateway_factory(config, workers=2)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


# -- streaming -------------------------------------------------------------------------


def test_sse_events_arrive_one_by_one(gw: Gateway) -> None:
    arrivals: list[float] = []
    with httpx.stream("GET", f"{gw.url}/api/sse?n=5&interval=0.4", timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        arrivals.extend(time.monotonic() for line in r.iter_lines() if line.startswith("data: "))
    assert len(arrivals) == 5
    # Buffering would deliver all five together at the end; streamed, they are spread
    # over the ~1.6 s the upstream takes. Generous bounds for a loaded machine.
    assert arrivals[-1] - arrivals[0] > 1.0
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(g > 0.15 for g in gaps), gaps


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_large_response_streams_in_constant_memory(gw: Gateway) -> None:
    size = 400 * 1024 * 1024
    pids = gw.worker_pids()
    before = {p: _rss_kb(p) for p in pids}
    peak = dict(before)
    received = 0
    with httpx.stream("GET", f"{gw.url}/big?n={size}&chunk=262144", timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        for i, chunk in enumerate(r.iter_raw(1 << 20)):
            received += len(chunk)
            if i % 32 == 0:
                for p in pids:
                    peak[p] = max(peak[p], _rss_kb(p))
    assert received == size
    growth_mb = max(peak[p] - before[p] for p in pids) / 1024
    assert growth_mb < 64, f"a worker grew by {growth_mb:.0f} MB while relaying {size >> 20} MB"


def test_chunked_response_passes_through(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/big?n=300000&chunk=1000&length=0", timeout=10)
    assert r.status_code == 200
    assert len(r.content) == 300_000
    assert "content-length" not in r.headers


def test_request_body_streams_to_upstream(gw: Gateway) -> None:
    blob = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB
    total = 40 * len(blob)

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield blob

    r = httpx.post(f"{gw.url}/up", content=chunks(), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == total
    assert r.json()["sha256"] == hashlib.sha256(blob * 40).hexdigest()


def test_small_body_with_length(gw: Gateway) -> None:
    r = httpx.put(f"{gw.url}/up", content=b"x" * 1000)
    assert r.json()["size"] == 1000


def test_head_keeps_content_length(gw: Gateway) -> None:
    r = httpx.head(f"{gw.url}/big?n=12345")
    assert r.status_code == 200
    assert r.headers["content-length"] == "12345"
    assert r.content == b""


# -- limits ----------------------------------------------------------------------------


def test_body_over_limit_by_content_length_is_refused_before_reading(gw: Gateway) -> None:
    # Declare 5 MB and send nothing: the gateway must answer 413 without waiting for it.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        data = s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert orjson.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_chunked_body_over_limit_is_refused(gw: Gateway) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"y" * 65536

    r = httpx.post(f"{gw.url}/api/upload", content=chunks(), timeout=30)
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")


def test_query_passes_verbatim_and_non_ascii_is_refused(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/echo?b=2&a=%C3%A9&a=1&flag")
    assert r.json()["query"] == "b=2&a=%C3%A9&a=1&flag"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /api/echo?q=caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data


def test_uri_too_long(gw: Gateway) -> None:
    assert_error(httpx.get(f"{gw.url}/api/echo?q={'a' * 3000}"), 414, "BAD_REQUEST")


def test_headers_too_large(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/echo", headers={f"x-h{i}": "v" * 500 for i in range(20)})
    assert_error(r, 431, "BAD_REQUEST")


def test_upstream_timeout_is_504(gw: Gateway) -> None:
    assert_error(httpx.get(f"{gw.url}/api/slow?delay=4", timeout=20), 504, "TIMEOUT")


def test_refused_upstream_is_502(gateway_factory: GatewayFactory) -> None:
    dead = gateway_factory(basic_config(f"http://127.0.0.1:{free_port()}"), workers=2)
    assert_error(httpx.get(f"{dead.url}/api/x"), 502, "PROXY_ERROR")


def test_client_disconnect_stops_the_upstream_exchange(gw: Gateway) -> None:
    # Without a disconnect watcher the exchange runs to the route timeout (5 s here) and
    # is logged as 504; with it, it stops about when the client leaves and logs 499.
    for path in ("/api/hang", "/api/sse?n=100&interval=0.1"):
        marker = "gone-" + path.split("/")[-1][:3]
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: {marker}\r\n\r\n".encode())
            time.sleep(0.5)
        deadline = time.monotonic() + 4
        line: dict[str, object] | None = None
        while time.monotonic() < deadline and line is None:
            for raw in gw.output().splitlines():
                if f'"request_id":"{marker}"' in raw:
                    line = orjson.loads(raw)
            time.sleep(0.1)
        assert line is not None, f"no access-log line for {path} within 4 s"
        assert float(line["duration_ms"]) < 3000, line  # type: ignore[arg-type]
        if path == "/api/hang":
            assert line["status"] == 499, line


def test_unknown_route_is_404(gw: Gateway) -> None:
    assert_error(httpx.get(f"{gw.url}/nowhere"), 404, "NOT_FOUND")


def test_method_not_allowed(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/up")
    body = assert_error(r, 405, "BAD_REQUEST")
    assert r.headers["allow"] == "POST, PUT"
    assert body["error"]["details"] == {"allowed": ["POST", "PUT"]}  # type: ignore[index]


def test_head_error_has_no_body(gw: Gateway) -> None:
    r = httpx.head(f"{gw.url}/nowhere")
    assert r.status_code == 404 and r.content == b""


# -- paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "upstream_path"),
    [
        ("/api/../admin", 200, "/admin"),  # normalized first, then routed to the exact /admin route
        ("/api/%2e%2e/admin", 200, "/admin"),
        ("/api/%2E%2E/%2e%2e/etc", 400, None),  # climbs above the root
        ("/api//echo///x", 200, "/echo/x"),
        ("/api/./echo/%7Euser", 200, "/echo/~user"),
        ("/api/a%2Fb", 400, None),
        ("/api/a%5cb", 400, None),
        ("/api/%00", 400, None),
        ("/api/%zz", 400, None),
    ],
)
def test_path_normalization(gw: Gateway, raw: str, status: int, upstream_path: str | None) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(f"GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), data
    payload = orjson.loads(body)
    if upstream_path is None:
        assert payload["error"]["code"] == "BAD_REQUEST"
    else:
        assert payload["raw_path"] == upstream_path


# -- headers ---------------------------------------------------------------------------


def _sent(resp: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in resp.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_hop_by_hop_and_owned_headers_are_removed(gw: Gateway) -> None:
    r = httpx.get(
        f"{gw.url}/api/echo",
        headers={
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-User-Id": "admin",
            "X-User-Roles": "root",
            "X-Kept": "yes",
        },
    )
    sent = _sent(r)
    for name in ("x-drop-me", "keep-alive", "te", "proxy-authorization", "x-user-id", "x-user-roles"):
        assert name not in sent, name
    assert sent["x-kept"] == ["yes"]


def test_forwarded_headers_ignore_untrusted_client_values(gw: Gateway) -> None:
    r = httpx.get(
        f"{gw.url}/api/echo",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil"},
    )
    sent = _sent(r)
    assert sent["x-forwarded-for"] == ["127.0.0.1"]
    assert sent["x-forwarded-proto"] == ["http"]
    assert sent["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]


def test_forwarded_headers_extend_a_trusted_proxy_chain(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    config = basic_config(upstream.url)
    config["server"] = {"trusted_proxies": ["127.0.0.0/8"]}
    trusted = gateway_factory(config, workers=2)
    r = httpx.get(
        f"{trusted.url}/api/echo",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example"},
    )
    sent = _sent(r)
    assert sent["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert sent["x-forwarded-proto"] == ["https"]
    assert sent["x-forwarded-host"] == ["api.example"]


def test_request_id_generated_and_echoed(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/echo")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32
    assert _sent(r)["x-request-id"] == [rid]


def test_request_and_correlation_ids_propagate(gw: Gateway) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = httpx.get(
        f"{gw.url}/api/echo",
        headers={"X-Request-ID": "req-123", "X-Correlation-ID": "corr-456", "traceparent": tp},
    )
    sent = _sent(r)
    assert sent["x-request-id"] == ["req-123"]
    assert sent["x-correlation-id"] == ["corr-456"]
    assert sent["traceparent"][0].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert r.headers["x-request-id"] == "req-123"
    assert r.headers["x-correlation-id"] == "corr-456"


def test_unsafe_request_id_is_replaced(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/echo", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    assert len(r.headers["x-request-id"]) == 32


def test_response_hop_by_hop_headers_are_removed(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/api/hop")
    assert r.status_code == 200
    for name in ("x-upstream-secret", "keep-alive", "proxy-authenticate"):
        assert name not in r.headers, name
    assert r.headers["x-kept"] == "yes"
    # The gateway's request id wins over one the upstream made up.
    assert r.headers.get_list("x-request-id") == [r.headers["x-request-id"]]
    assert r.headers["x-request-id"] != "upstream-chosen"


def test_non_ascii_upstream_header_bytes_pass_through_unchanged(gw: Gateway) -> None:
    # RFC 9110 treats such bytes as opaque; like nginx, the gateway relays them byte for byte.
    r = httpx.get(f"{gw.url}/api/raw-header")
    assert r.status_code == 200
    raw = dict(r.headers.raw)
    assert raw[b"x-name"] == "José 中".encode()
    assert raw[b"x-latin"] == b"caf\xe9"
    assert httpx.get(f"{gw.url}/api/echo").status_code == 200


def test_request_header_bytes_reach_upstream_unchanged(gw: Gateway) -> None:
    # The upstream app decodes header bytes as latin-1 to report them: UTF-8 and
    # latin-1 values both arrive byte for byte.
    r = httpx.get(f"{gw.url}/api/echo", headers={"x-name": "José 中".encode(), "x-latin": b"caf\xe9"})
    assert _sent(r)["x-name"] == ["José 中".encode().decode("latin-1")]
    assert _sent(r)["x-latin"] == ["caf\xe9"]


def test_own_endpoints_match_whole_paths_only(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    config = basic_config(upstream.url)
    config["routes"] = [{"name": "all", "path": "/", "service": "backend"}]
    gw_all = gateway_factory(config, workers=2)
    assert httpx.get(f"{gw_all.url}/healthcare/x").json()["path"] == "/healthcare/x"
    assert httpx.get(f"{gw_all.url}/metrics-v2").json()["path"] == "/metrics-v2"
    assert httpx.get(f"{gw_all.url}/health/live").json()["status"] == "alive"


def test_round_robin_across_instances(gateway_factory: GatewayFactory) -> None:
    a, b = Upstream(), Upstream()
    try:
        config = basic_config(a.url)
        config["services"]["backend"]["urls"] = [a.url, b.url]
        rr = gateway_factory(config, workers=2)
        with httpx.Client() as client:
            for _ in range(40):
                assert client.get(f"{rr.url}/api/echo").status_code == 200
        seen_a, seen_b = a.stats()["total"], b.stats()["total"]
        assert seen_a + seen_b == 40
        assert seen_a >= 10 and seen_b >= 10, (seen_a, seen_b)
    finally:
        a.stop()
        b.stop()
