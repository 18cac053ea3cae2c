from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpath.paths import UnsafePath, normalize, plain_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/", "/"),
        (b"/api/users", "/api/users"),
        (b"/api/../admin", "/admin"),
        (b"/api/%2e%2e/admin", "/admin"),
        (b"/api/%2E%2E/admin", "/admin"),
        (b"/api/.%2e/admin", "/admin"),
        (b"//api///users//", "/api/users/"),
        (b"/a/./b/.", "/a/b/"),
        (b"/a/b/..", "/a/"),
        (b"/a/%7euser", "/a/~user"),
        (b"/a/%c3%a9", "/a/%C3%A9"),
        (b"/a/%25", "/a/%25"),
        (b"/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
    ],
)
def test_normalizes(raw: bytes, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [b"", b"api", b"/..", b"/a/../..", b"/%2e%2e/x", b"/a%2Fb", b"/a%2fb", b"/a%5Cb", b"/a\\b", b"/a%00",
     b"/a%0a", b"/a%zz", b"/a%2", b"/a%", b"/a b", b"/a\x7f", b"/caf\xc3\xa9", b"/a\"b", b"/a<b>"],
)
def test_rejects(raw: bytes) -> None:
    with pytest.raises(UnsafePath):
        normalize(raw)


def test_encoded_slash_can_be_kept_encoded() -> None:
    assert normalize(b"/pkg/a%2fb", keep_encoded_slash=True) == "/pkg/a%2Fb"


@given(st.binary(max_size=64))
def test_never_raises_anything_but_unsafe_path(data: bytes) -> None:
    try:
        out = normalize(b"/" + data)
    except UnsafePath:
        return
    # Idempotent, rooted, free of dot segments and empty segments.
    assert normalize(out.encode()) == out
    assert out.startswith("/")
    segments = out.split("/")[1:-1]
    assert all(s not in ("", ".", "..") for s in segments)


# What plain_path refuses, as a regex: a "%", "//", "/." or a byte outside pchar and "/".
_NEEDS_WORK = re.compile(rb"%|//|/\.|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")


@given(st.binary(max_size=24) | st.text("abz09-._~!$&'()*+,;=:@/%", max_size=24).map(str.encode))
def test_plain_path_is_the_rule(data: bytes) -> None:
    raw = b"/" + data
    plain = plain_path(raw)
    assert (plain is None) == (_NEEDS_WORK.search(raw) is not None)
    assert plain is None or plain == raw.decode("ascii")


def test_plain_paths_pass_untouched() -> None:
    assert plain_path(b"/api/orders/8f14e45f") == "/api/orders/8f14e45f"
    assert normalize(b"/api/v1/a-b_c.d~e!$&'()*+,;=:@") == "/api/v1/a-b_c.d~e!$&'()*+,;=:@"
    assert all(plain_path(p) is None for p in (b"/api//x", b"/api/.x", b"/a%41", b"/a b"))
