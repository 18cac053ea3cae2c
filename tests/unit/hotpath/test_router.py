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


# -- path templates ----------------------------------------------------------------------

TEMPLATES = RouteTable([
    route("api", "/api"),
    route("content", "/api/v1/content/{id:int}", match="exact"),
    route("slug", "/api/v1/content/{slug:[a-z][a-z0-9-]{0,63}}", match="exact"),
    route("content-any", "/api/v1/content/{anything}", match="exact", methods=("DELETE",)),
    route("latest", "/api/v1/content/latest", match="exact"),
    route("stream", "/jobs/{job_id}/stream", match="exact", methods=("GET",)),
    route("job", "/jobs/{job_id}", methods=("GET",)),
    route("jobs-static", "/jobs/special/stream", match="exact"),
    route("tenant", "/t/{tenant}", strip=True, up="/v2"),
])


def matched(path: str, method: str = "GET") -> tuple[str, dict[str, str] | None] | None:
    r = TEMPLATES.match(path, method)
    if r is None:
        return None
    return r.name, (r.template.params(path) if r.template is not None else None)


def test_int_parameter_matches_digits_only() -> None:
    assert matched("/api/v1/content/42") == ("content", {"id": "42"})
    assert matched("/api/v1/content/x") == ("slug", {"slug": "x"})
    assert matched("/api/v1/content/X") == ("api", None)  # neither pattern: the static prefix
    assert matched("/api/v1/content/-1") == ("api", None)
    assert matched("/api/v1/content/4٣") == ("api", None)  # non-ASCII digits are not digits here


def test_static_segment_beats_a_parameter() -> None:
    assert matched("/api/v1/content/latest") == ("latest", None)
    assert matched("/jobs/special/stream") == ("jobs-static", None)
    assert matched("/jobs/7/stream") == ("stream", {"job_id": "7"})


def test_plain_parameter_comes_after_typed_ones_and_methods_select() -> None:
    assert matched("/api/v1/content/42", "DELETE") == ("content", {"id": "42"})
    assert matched("/api/v1/content/A_B", "DELETE") == ("content-any", {"anything": "A_B"})
    assert matched("/api/v1/content/A_B", "GET") == ("api", None)


def test_prefix_template_and_its_depth_against_static_prefixes() -> None:
    assert matched("/jobs/7") == ("job", {"job_id": "7"})
    assert matched("/jobs/7/other/deeper") == ("job", {"job_id": "7"})
    assert matched("/jobs/7/stream/x") == ("job", {"job_id": "7"})
    assert matched("/jobs/7", "POST") is None
    assert matched("/jobs/") is None  # an empty segment is no parameter
    assert TEMPLATES.allowed_methods("/jobs/7/stream") == frozenset({"GET"})
    assert TEMPLATES.allowed_methods("/nowhere") is None
    # A template deeper than the static prefix wins; the static prefix wins a tie.
    table = RouteTable([route("deep-static", "/a/b"), route("tpl", "/a/{x}"), route("tpl3", "/a/{x}/c")])
    assert table.match("/a/b/z", "GET").name == "deep-static"  # type: ignore[union-attr]
    assert table.match("/a/q/z", "GET").name == "tpl"  # type: ignore[union-attr]
    assert table.match("/a/b/c", "GET").name == "tpl3"  # type: ignore[union-attr]


def test_trailing_slash_behaves_like_static_routes() -> None:
    assert matched("/api/v1/content/42/") == ("api", None)  # exact: no trailing slash
    assert matched("/jobs/7/") == ("job", {"job_id": "7"})  # prefix: the slash adds nothing


def test_template_prefix_is_stripped_by_segments() -> None:
    r = TEMPLATES.match("/t/acme/things/1", "GET")
    assert r is not None and r.name == "tenant"
    assert r.upstream_path("/t/acme/things/1") == "/v2/things/1"
    assert r.upstream_path("/t/acme") == "/v2"


def test_conflicting_templates_name_both() -> None:
    import pytest

    from hotpath.templates import TemplateConflict

    with pytest.raises(TemplateConflict) as caught:
        RouteTable([route("a", "/x"), route("b", "/jobs/{id}", match="exact"),
                    route("c", "/jobs/{job}", match="exact", methods=("GET",))])
    assert (caught.value.first, caught.value.second) == (1, 2)
    assert "/jobs/{job}" in str(caught.value) and "/jobs/{id}" in str(caught.value)
    # Disjoint methods, another kind, or another match type are no conflict.
    RouteTable([route("b", "/jobs/{id}", match="exact", methods=("POST",)),
                route("c", "/jobs/{job}", match="exact", methods=("GET",)),
                route("d", "/jobs/{job:int}", match="exact"),
                route("e", "/jobs/{job}")])


def test_bad_templates_are_refused() -> None:
    import pytest

    from hotpath.templates import Template, TemplateError

    for bad in ("/a/x{id}", "/a/{id", "/a/{1d}", "/a/{id}/{id}", "/a/{id:}", "/a/{id:[}"):
        with pytest.raises(TemplateError):
            Template(bad)


def test_a_template_expands_back_into_a_path() -> None:
    import pytest

    from hotpath.templates import Template, TemplateError

    template = Template("/jobs/{job_id:int}/files/{name}")
    path = template.expand({"job_id": "7", "name": "take.wav"})
    assert path == "/jobs/7/files/take.wav"
    assert template.params(path) == {"job_id": "7", "name": "take.wav"}
    for bad in ({"job_id": "x", "name": "a"}, {"job_id": "7"}, {"job_id": "7", "name": "a/b"}):
        with pytest.raises(TemplateError):
            template.expand(bad)
