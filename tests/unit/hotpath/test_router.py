from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hotpath.context import RouteInfo
from hotpath.plugin import Chain
from hotpath.router import Route, RouteTable


def route(name: str, path: str, *, match: str = "prefix", methods: tuple[str, ...] = (),
          strip: bool = False, up: str = "") -> Route:
    service: Any = SimpleNamespace(name="svc")
    return Route(RouteInfo(name, path, "svc", methods), match=match, service=service,
                 strip_prefix=strip, upstream_prefix=up, timeout=1.0, max_body_bytes=1, retry_non_idempotent=False,
                 chain=Chain([]))


TABLE = RouteTable([
    route("root", "/"),
    route("api", "/api"),
    route("users", "/api/users", methods=("GET",)),
    route("users-write", "/api/users", methods=("POST",)),
    route("exact", "/api/users/me", match="exact"),
    route("deep", "/a/b/c/"),
])


def name(path: str, method: str = "GET") -> str | None:
    r = TABLE.match(path, method)
    return r.name if r else None


def test_longest_prefix_at_segment_boundary() -> None:
    assert name("/api/users") == "users"
    assert name("/api/users/7") == "users"
    assert name("/api/usersX") == "api"
    assert name("/api") == "api"
    assert name("/apix") == "root"
    assert name("/a/b/c/d") == "deep"
    assert name("/a/b") == "root"


def test_exact_wins_and_only_matches_exactly() -> None:
    assert name("/api/users/me") == "exact"
    assert name("/api/users/me/x") == "users"


def test_method_selects_among_routes_of_one_path() -> None:
    assert name("/api/users/1", "POST") == "users-write"
    assert TABLE.match("/api/users/1", "DELETE") is None
    assert TABLE.allowed_methods("/api/users/1") == frozenset({"GET", "POST"})


def test_no_route() -> None:
    assert RouteTable([route("api", "/api")]).match("/other", "GET") is None
    assert RouteTable([route("api", "/api")]).allowed_methods("/other") is None


def test_upstream_path() -> None:
    assert route("r", "/api", strip=True).upstream_path("/api/u") == "/u"
    assert route("r", "/api", strip=True).upstream_path("/api") == "/"
    assert route("r", "/api", strip=True, up="/v2").upstream_path("/api/u") == "/v2/u"
    assert route("r", "/api", strip=True, up="/v2").upstream_path("/api") == "/v2"
    assert route("r", "/api", up="/v2").upstream_path("/api/u") == "/v2/api/u"
    assert route("r", "/api").upstream_path("/api/u") == "/api/u"
