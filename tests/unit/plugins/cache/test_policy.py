from __future__ import annotations

import pytest

from plugins.cache.policy import judge, parse_cache_control, sorted_query, vary_names


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_plain_response_gets_the_route_ttl() -> None:
    v = judge(h(("content-type", "application/json")), 60, True, 8)
    assert (v.ttl, v.vary, v.reason) == (60, (), None)


@pytest.mark.parametrize("cc", ["no-store", "private", 'private="set-cookie"', "no-cache", "max-age=0",
                                "public, NO-STORE"])
def test_directives_that_forbid_storing(cc: str) -> None:
    assert judge(h(("cache-control", cc)), 60, True, 8).reason is not None


def test_s_maxage_wins_over_max_age_and_only_shortens() -> None:
    assert judge(h(("cache-control", "max-age=5, s-maxage=20")), 60, True, 8).ttl == 20
    assert judge(h(("cache-control", "max-age=600")), 60, True, 8).ttl == 60
    assert judge(h(("cache-control", "max-age=5")), 60, False, 8).ttl == 60
    assert judge(h(("cache-control", "max-age=junk")), 60, True, 8).ttl == 60


def test_set_cookie_and_vary_star_are_not_stored() -> None:
    assert judge(h(("set-cookie", "a=b")), 60, True, 8).reason == "set-cookie"
    assert judge(h(("vary", "Accept, *")), 60, True, 8).reason == "vary-star"


def test_vary_names_are_normalized_and_bounded() -> None:
    v = judge(h(("vary", "Accept-Language, accept"), ("vary", "ACCEPT")), 60, True, 8)
    assert v.vary == ("accept", "accept-language")
    assert judge(h(("vary", "a, b, c")), 60, True, 2).reason == "vary-too-wide"
    assert vary_names([" , x ,"]) == ("x",)


def test_cache_control_parsing() -> None:
    assert parse_cache_control('Max-Age="10", public,, private=x') == {"max-age": "10", "public": None,
                                                                         "private": "x"}


def test_sorted_query_orders_names_but_keeps_repeated_values_in_order() -> None:
    assert sorted_query(b"b=2&a=1") == b"a=1&b=2"
    assert sorted_query(b"a=2&b=1&a=1") == b"a=2&a=1&b=1"
    assert sorted_query(b"x=1") == b"x=1"
    assert sorted_query(b"b=1&&a") == b"a&b=1"
