from __future__ import annotations

import re

import pytest

from hotpath.headers import (
    RequestHeaderPolicy,
    TrustedProxies,
    UnsafeHeaderValue,
    new_request_id,
    response_headers,
    safe_id,
)

IDENTITY = ("x-user-id", "x-user-roles")


def build(
    headers: list[tuple[bytes, bytes]], *, peer: str = "10.1.2.3", trusted: tuple[str, ...] = ()
) -> dict[str, str]:
    policy = RequestHeaderPolicy(IDENTITY, TrustedProxies(trusted))
    out = policy.build(headers, peer=peer, scheme="http", request_id=(b"x-request-id", b"rid"), correlation_id=None,
                       extra=[(b"x-user-id", b"verified")])
    assert len({k for k, _ in out}) == len(out), out  # no duplicates
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in out}


def test_drops_hop_by_hop_connection_named_and_owned() -> None:
    sent = build([(b"host", b"gw"), (b"connection", b"close, x-a"), (b"x-a", b"1"), (b"te", b"trailers"),
                  (b"x-user-id", b"spoofed"), (b"content-length", b"3"), (b"x-b", b"2")])
    assert "x-a" not in sent and "te" not in sent and "content-length" not in sent and "host" not in sent
    assert sent["x-user-id"] == "verified"
    assert sent["x-b"] == "2"
    assert sent["x-forwarded-host"] == "gw"
    assert sent["x-request-id"] == "rid"


def test_untrusted_peer_cannot_set_forwarded_headers() -> None:
    sent = build([(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-proto", b"https"), (b"forwarded", b"for=1.1.1.1"),
                  (b"x-real-ip", b"1.1.1.1")])
    assert sent["x-forwarded-for"] == "10.1.2.3"
    assert sent["x-forwarded-proto"] == "http"
    assert "forwarded" not in sent
    assert "x-real-ip" not in sent


def test_trusted_peer_keeps_client_address_claims() -> None:
    sent = build([(b"forwarded", b"for=1.1.1.1"), (b"x-real-ip", b"1.1.1.1")], trusted=("10.0.0.0/8",))
    assert sent["forwarded"] == "for=1.1.1.1"
    assert sent["x-real-ip"] == "1.1.1.1"


def test_trusted_peer_extends_chain() -> None:
    sent = build([(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-proto", b"https")], trusted=("10.0.0.0/8",))
    assert sent["x-forwarded-for"] == "1.1.1.1, 10.1.2.3"
    assert sent["x-forwarded-proto"] == "https"


def test_client_ip_is_rightmost_untrusted() -> None:
    t = TrustedProxies(["10.0.0.0/8", "192.168.0.0/16"])
    assert t.client_from_chain("10.0.0.1", b"6.6.6.6, 203.0.113.5, 192.168.1.1") == "203.0.113.5"
    assert t.client_from_chain("203.0.113.7", b"6.6.6.6") == "203.0.113.7"  # untrusted peer: header ignored


def test_response_headers() -> None:
    out = response_headers([(b"connection", b"x-s"), (b"x-s", b"1"), (b"transfer-encoding", b"chunked"),
                            (b"x-request-id", b"theirs"), (b"content-type", b"text/plain")],
                           (b"x-request-id", b"ours"), None)
    assert out == [(b"content-type", b"text/plain"), (b"x-request-id", b"ours")]


def test_new_request_ids_are_32_hex_digits_and_distinct() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Leading zero bytes are kept: the width is fixed.
    assert any(i.startswith("0") for i in ids)


def test_safe_id() -> None:
    assert safe_id(b"abc-123_x.y:z") == "abc-123_x.y:z"
    assert safe_id(b"a b") is None
    assert safe_id(b"x" * 129) is None
    assert safe_id(None) is None


def test_underscore_spellings_of_owned_headers_are_dropped() -> None:
    sent = build([(b"x_user_id", b"admin"), (b"x_forwarded_for", b"6.6.6.6"), (b"x_custom", b"kept")])
    assert "x_user_id" not in sent
    assert "x_forwarded_for" not in sent
    assert sent["x_custom"] == "kept"
    assert sent["x-user-id"] == "verified"


def test_values_pass_byte_for_byte() -> None:
    sent = build([(b"x-name", "José 中".encode()), (b"x-latin", b"caf\xe9")])
    assert sent["x-name"].encode("latin-1") == "José 中".encode()
    assert sent["x-latin"].encode("latin-1") == b"caf\xe9"


@pytest.mark.parametrize("value", [b"a\r\nx-admin: 1", b"a\nb", b"a\rb"])
def test_plugin_header_with_a_line_break_is_refused(value: bytes) -> None:
    policy = RequestHeaderPolicy(IDENTITY, TrustedProxies(()))
    with pytest.raises(UnsafeHeaderValue):
        policy.build([], peer="10.1.2.3", scheme="http", request_id=(b"x-request-id", b"rid"), correlation_id=None,
                     extra=[(b"x-user-id", value)])
    # Behind clean headers, and in a name rather than a value: the error names the header.
    for extra in ([(b"x-user-id", b"u1"), (b"x-user-tier", value)], [(b"x-ok", b"1"), (value, b"v")]):
        with pytest.raises(UnsafeHeaderValue, match=re.escape(repr(extra[1][0]))):
            policy.build([], peer="10.1.2.3", scheme="http", request_id=(b"x-request-id", b"rid"), correlation_id=None,
                         extra=extra)


def test_clean_plugin_headers_follow_the_request_headers() -> None:
    policy = RequestHeaderPolicy(IDENTITY, TrustedProxies(()))
    extra = [(b"x-user-id", b"u1"), (b"x-user-tier", b"pro"), (b"x-user-scopes", b"a b")]
    out = policy.build([(b"accept", b"*/*")], peer="10.1.2.3", scheme="http", request_id=(b"x-request-id", b"rid"),
                       correlation_id=None, extra=extra)
    assert out[-3:] == extra
