"""Header preparation in both directions (hotpath/headers.py).

The request side turns a typical browser-sized header list into the upstream's; the
response side cleans nginx-style upstream headers and adds the request ids.
"""

from __future__ import annotations

import pytest

from bench.support.fixture_types import Benchmark
from controlplane.config.schema import ServerConfig
from hotpath.context import Header
from hotpath.headers import RequestHeaderPolicy, TrustedProxies, response_headers

pytestmark = pytest.mark.benchmark(group="headers")

CLIENT_HEADERS: list[Header] = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"),
    (b"accept", b"application/json, text/plain, */*"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl"),
    (b"connection", b"keep-alive"),
    (b"x-request-id", b"5f2b8c1d-2f0e-4c1a-9a53-0c7b1f0e9d11"),
    (b"x-correlation-id", b"checkout-7781"),
    (b"x-user-id", b"spoofed-admin"),  # gateway-owned: must be dropped
    (b"x-forwarded-for", b"203.0.113.9"),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    (b"cookie", b"session=abc; theme=dark"),
]

UPSTREAM_HEADERS: list[Header] = [
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
    (b"content-type", b"application/json"),
    (b"content-length", b"37"),
    (b"connection", b"keep-alive"),
    (b"cache-control", b"no-cache"),
    (b"x-upstream", b"orders-7"),
]


@pytest.mark.parametrize("trusted", [(), ("127.0.0.0/8",)], ids=["untrusted-peer", "trusted-proxy"])
def bench_request_headers(benchmark: Benchmark, trusted: tuple[str, ...]) -> None:
    proxies = TrustedProxies(trusted)
    policy = RequestHeaderPolicy(ServerConfig().identity_headers, proxies)
    extra: list[Header] = [(b"x-user-id", b"user-42"), (b"x-user-tier", b"pro")]

    def prepare() -> list[Header]:
        return policy.build(
            CLIENT_HEADERS,
            peer="127.0.0.1",
            scheme="http",
            request_id=(b"x-request-id", b"5f2b8c1d-2f0e-4c1a-9a53-0c7b1f0e9d11"),
            correlation_id=(b"x-correlation-id", b"checkout-7781"),
            extra=extra,
        )

    out = dict(benchmark(prepare))
    assert out[b"x-user-id"] == b"user-42"  # the verified value, not the client's
    assert b"connection" not in out and b"host" not in out
    assert out[b"x-forwarded-host"] == b"api.example.com"
    assert out[b"x-forwarded-for"] == (b"203.0.113.9, 127.0.0.1" if trusted else b"127.0.0.1")


def bench_response_headers(benchmark: Benchmark) -> None:
    rid = (b"x-request-id", b"5f2b8c1d-2f0e-4c1a-9a53-0c7b1f0e9d11")
    cid = (b"x-correlation-id", b"checkout-7781")
    out = benchmark(response_headers, UPSTREAM_HEADERS, rid, cid)
    names = [k for k, _ in out]
    assert b"connection" not in names
    assert names[-2:] == [b"x-request-id", b"x-correlation-id"]
    assert len(out) == len(UPSTREAM_HEADERS) + 1
