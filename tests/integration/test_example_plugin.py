"""The example plugin of docs/plugins.md, loaded by the real gateway both ways a third-party
plugin can be: a dotted path in ``plugin_modules`` and a ``gatehouse.plugins`` entry point."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.processes import REPO, Upstream

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples" / "plugins"
SITE = REPO / "tests" / "fixtures" / "plugins" / "site"


def stamp_config(upstream: Upstream, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "services": {"backend": {"urls": [upstream.url]}},
        "plugins": {"stamp": {"route_header": "x-forwarded-by-route"}},
        "routes": [{"name": "stamped", "path": "/s", "service": "backend", "strip_prefix": True,
                    "plugins": {"stamp": {"value": value, "deny_prefixes": ["/s/closed"]}}}],
        **extra,
    }


def check_stamped(url: str, value: str) -> None:
    r = httpx.get(f"{url}/s/echo/x", timeout=10)
    assert r.status_code == 200
    assert r.headers["x-stamp"] == value
    sent = dict(r.json()["headers"])
    assert sent["x-forwarded-by-route"] == "stamped"
    denied = httpx.get(f"{url}/s/closed/door", timeout=10)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "FORBIDDEN"


def test_loaded_by_dotted_path(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    config = stamp_config(upstream, "dotted", plugin_modules=["gatehouse_stamp:StampPlugin"])
    gw = gateway_factory(config, workers=2, env={"PYTHONPATH": f"{REPO}:{EXAMPLES}"})
    check_stamped(gw.url, "dotted")


def test_loaded_by_entry_point(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    # No plugin_modules: the name 'stamp' resolves only through the entry point.
    gw = gateway_factory(stamp_config(upstream, "entry-point"), workers=2,
                         env={"PYTHONPATH": f"{REPO}:{EXAMPLES}:{SITE}"})
    check_stamped(gw.url, "entry-point")
