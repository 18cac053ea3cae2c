from __future__ import annotations

import httpx

from tests.conftest import GatewayFactory, basic_config
from tests.support.processes import Upstream


def test_proxies_through_two_workers(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(basic_config(upstream.url), workers=2)
    assert len(gw.worker_pids()) == 2
    r = httpx.get(f"{gw.url}/api/echo/x?a=1")
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/echo/x"
    assert body["query"] == "a=1"
    assert r.headers["x-request-id"]
