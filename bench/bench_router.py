"""Route lookup in a compiled table of ~100 routes (hotpath/router.py)."""

from __future__ import annotations

import pytest

from bench.support import routes
from bench.support import routes as routes_mod
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


def _template_table(n: int) -> RouteTable:
    """``n`` template routes, shaped like a real API: ``/api/v1/<res><i>/{id:int}`` and
    ``/api/v1/<res><i>/{id}/items/{item}``, plus a catch-all."""
    per = max(n // 2, 1)
    routes: list[dict[str, object]] = []
    for i in range(per):
        routes.append({"name": f"get-{i}", "path": f"/api/v1/r{i}/{{id:int}}", "match": "exact",
                       "service": "backend"})
        routes.append({"name": f"items-{i}", "path": f"/api/v1/r{i}/{{id}}/items/{{item:[a-z0-9-]{{1,64}}}}",
                       "match": "exact", "service": "backend"})
    routes.append({"name": "catch-all", "path": "/", "service": "backend"})
    config = routes_mod.route_table_config("http://127.0.0.1:9", versions=1)
    config["routes"] = routes
    loaded = routes_mod.load(config)
    gateway, _ = build_gateway(loaded, new_runtime(loaded))
    assert len(gateway.table.routes) == 2 * per + 1
    return gateway.table


@pytest.fixture(scope="module", params=[10, 1000], ids=["10-templates", "1000-templates"])
def template_table(request: pytest.FixtureRequest) -> tuple[int, RouteTable]:
    return request.param, _template_table(request.param)


@pytest.mark.benchmark(group="router-templates")
@pytest.mark.parametrize("shape", ["int", "regex"])
def bench_template_match(benchmark: Benchmark, template_table: tuple[int, RouteTable], shape: str) -> None:
    """The same lookup in a table of 10 and of 1,000 templates: its cost is the path's depth."""
    n, table = template_table
    last = n // 2 - 1
    path = f"/api/v1/r{last}/42" if shape == "int" else f"/api/v1/r{last}/42/items/blue-7"

    def lookup() -> dict[str, str]:
        route = table.match(path, "GET")
        assert route is not None and route.template is not None
        return route.template.params(path)

    params = benchmark(lookup)
    assert params == ({"id": "42"} if shape == "int" else {"id": "42", "item": "blue-7"})
