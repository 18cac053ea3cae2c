"""Route lookup in a compiled table of ~100 routes (hotpath/router.py)."""

from __future__ import annotations

import pytest

from bench.support import routes
from bench.support.fixture_types import Benchmark
from controlplane.build import build_gateway, new_runtime
from hotpath.router import RouteTable

pytestmark = pytest.mark.benchmark(group="router")


@pytest.fixture(scope="module")
def table() -> RouteTable:
    loaded = routes.load(routes.route_table_config("http://127.0.0.1:9"))
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    assert len(gateway.table.routes) > 90
    return gateway.table


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/api/v2/orders/8f14e45f/items/3", "GET", "v2-orders"),  # prefix, five segments deep
        ("/api/v1/me", "GET", "me"),  # exact
        ("/api/v2/users/42", "GET", "v2-users"),  # skips a write-only route of the same prefix
        ("/not/a/known/prefix/at/all", "GET", "catch-all"),  # walks every boundary down to "/"
    ],
    ids=["prefix-deep", "exact", "method", "fallthrough"],
)
def bench_route_match(benchmark: Benchmark, table: RouteTable, path: str, method: str,
                      expected: str) -> None:
    route = benchmark(table.match, path, method)
    assert route is not None and route.name == expected
