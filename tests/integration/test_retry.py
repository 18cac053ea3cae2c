"""Upstream retries through the real gateway (Granian, 2 workers) and a real upstream."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import Gateway, Upstream, free_port

pytestmark = pytest.mark.integration

FAST = {"attempts": 3, "initial_delay": 0.05, "max_delay": 0.2}


@pytest.fixture(scope="module")
def gw(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused

    def svc(retry: dict[str, Any], urls: list[str] | None = None) -> dict[str, Any]:
        return {"urls": urls or [upstream.url], "timeouts": {"connect": 1, "read": 5, "total": 8}, "retry": retry}

    config = {
        "services": {
            "retrying": svc(FAST),
            "on429": svc({**FAST, "attempts": 2, "on_429": True}),
            "nobudget": svc({**FAST, "budget": {"ratio": 0, "min_per_second": 0}}),
            "twohosts": svc(FAST, urls=[dead, upstream.url]),
        },
        "routes": [
            {"name": "retrying", "path": "/retrying", "service": "retrying", "strip_prefix": True},
            {"name": "post", "path": "/post-ok", "service": "retrying", "strip_prefix": True,
             "retry_non_idempotent": True},
            {"name": "short", "path": "/short", "service": "retrying", "strip_prefix": True, "timeout": 1.5},
            {"name": "on429", "path": "/on429", "service": "on429", "strip_prefix": True},
            {"name": "nobudget", "path": "/nobudget", "service": "nobudget", "strip_prefix": True},
            {"name": "twohosts", "path": "/twohosts", "service": "twohosts", "strip_prefix": True},
        ],
    }
    return gateway_factory(config, workers=2)


def hits(upstream: Upstream, path: str) -> int:
    seen: dict[str, int] = upstream.stats()["seen"]
    return seen.get(path, 0)


def metric(gw: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_retry_after_is_honoured(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    started = time.monotonic()
    r = httpx.get(f"{gw.url}/retrying/status/503?retry_after=1", timeout=15)
    elapsed = time.monotonic() - started
    assert r.status_code == 503  # the last attempt's answer, passed through
    assert r.headers["retry-after"] == "1"
    assert hits(upstream, "/status/503") == 3
    # Two waits of at least Retry-After (1 s) each; backoff alone would wait ~0.15 s.
    assert elapsed >= 2.0


@pytest.mark.parametrize(("status", "attempts"), [(502, 3), (503, 3), (504, 3), (500, 1), (429, 1), (404, 1)])
def test_which_statuses_are_retried(gw: Gateway, upstream: Upstream, status: int, attempts: int) -> None:
    upstream.reset()
    r = httpx.get(f"{gw.url}/retrying/status/{status}", timeout=15)
    assert r.status_code == status
    assert hits(upstream, f"/status/{status}") == attempts


def test_429_is_retried_when_configured(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    assert httpx.get(f"{gw.url}/on429/status/429", timeout=15).status_code == 429
    assert hits(upstream, "/status/429") == 2


def test_post_is_not_retried_unless_the_route_opts_in(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    assert httpx.post(f"{gw.url}/retrying/status/503", content=b"{}", timeout=15).status_code == 503
    assert hits(upstream, "/status/503") == 1
    upstream.reset()
    assert httpx.post(f"{gw.url}/post-ok/status/503", content=b"{}", timeout=15).status_code == 503
    assert hits(upstream, "/status/503") == 3


def test_no_retry_that_would_end_after_the_route_timeout(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    r = httpx.get(f"{gw.url}/short/status/503?retry_after=5", timeout=15)
    assert r.status_code == 503
    assert hits(upstream, "/status/503") == 1


def test_the_budget_stops_retries_and_is_counted(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    before = metric(gw, "gatehouse_retry_budget_exhausted_total", service="nobudget")
    for _ in range(3):
        assert httpx.get(f"{gw.url}/nobudget/status/503", timeout=15).status_code == 503
    assert hits(upstream, "/status/503") == 3
    assert metric(gw, "gatehouse_retry_budget_exhausted_total", service="nobudget") == before + 3


def test_connection_errors_are_retried_on_another_instance(gw: Gateway, upstream: Upstream) -> None:
    before = metric(gw, "gatehouse_retries_total", service="twohosts", reason="connect_error")
    for _ in range(4):  # round robin: half of them try the dead instance first
        assert httpx.get(f"{gw.url}/twohosts/echo/x", timeout=15).status_code == 200
    assert metric(gw, "gatehouse_retries_total", service="twohosts", reason="connect_error") >= before + 1
