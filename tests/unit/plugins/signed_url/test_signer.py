"""Signing and verifying URLs: the canonical form, tampering, expiry, keys and bindings."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from plugins.signed_url.signer import Refused, UrlSigner, bind_ip, bind_subject

NOW = 1_800_000_000.0
KEY_A = b"a" * 32
KEY_B = b"b" * 40


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def signer(clock: Clock, keys: dict[str, bytes] | None = None, signing: str | None = "kb") -> UrlSigner:
    return UrlSigner(keys if keys is not None else {"ka": KEY_A, "kb": KEY_B}, signing, leeway=30, max_ttl=86_400,
                     clock=clock)


def split(url: str) -> tuple[str, bytes]:
    path, _, query = url.partition("?")
    return path, query.encode()


def reason(s: UrlSigner, method: str, url: str, binding: bytes = b"") -> str | None:
    path, query = split(url)
    try:
        s.verify(method, path, query, binding)
    except Refused as refused:
        return refused.reason
    return None


def test_the_canonical_form_is_what_the_docs_say() -> None:
    clock = Clock()
    url, expires = signer(clock).sign("GET", "/files/jobs/42/out.mp4", ttl=3600, query=b"dl=1&a=%2F")
    assert expires == int(NOW) + 3600
    canonical = b"\n".join([b"GATEHOUSE-URL-V1", b"GET", b"/files/jobs/42/out.mp4",
                            b"a=%2F&dl=1&exp=1800003600&kid=kb", b""])
    mac = base64.urlsafe_b64encode(hmac.new(KEY_B, canonical, hashlib.sha256).digest()).rstrip(b"=").decode()
    assert url == f"/files/jobs/42/out.mp4?dl=1&a=%2F&exp=1800003600&kid=kb&sig={mac}"
    assert len(mac) == 43


def test_a_signed_url_opens_and_the_signature_parameters_are_removed() -> None:
    clock = Clock()
    s = signer(clock)
    url, _ = s.sign("GET", "/files/a.pdf", ttl=60, query=b"x=1")
    path, query = split(url)
    assert s.verify("GET", path, query, b"") == b"x=1"
    assert s.verify("HEAD", path, query, b"") == b"x=1"  # a GET link opens with HEAD too
    # The pairs' order does not matter: they are sorted.
    pairs = query.split(b"&")
    assert s.verify("GET", path, b"&".join(reversed(pairs)), b"") == b"x=1"


def test_every_change_is_refused() -> None:
    clock = Clock()
    s = signer(clock)
    url, expires = s.sign("GET", "/files/a.pdf", ttl=60, query=b"x=1")
    sig = url.rsplit("sig=", 1)[1]
    assert reason(s, "POST", url) == "bad_signature"
    assert reason(s, "GET", url.replace("/files/a.pdf", "/files/b.pdf")) == "bad_signature"
    assert reason(s, "GET", url.replace("x=1", "x=2")) == "bad_signature"
    assert reason(s, "GET", url.replace("x=1", "x=1&y=2")) == "bad_signature"
    assert reason(s, "GET", url.replace("x=1&", "")) == "bad_signature"
    assert reason(s, "GET", url.replace(f"exp={expires}", f"exp={expires + 60}")) == "bad_signature"
    assert reason(s, "GET", url.replace("kid=kb", "kid=ka")) == "bad_signature"
    assert reason(s, "GET", url.replace(sig, sig.swapcase())) == "bad_signature"
    flipped = next(i for i, c in enumerate(sig) if c.isalpha())
    one_letter = sig[:flipped] + sig[flipped].swapcase() + sig[flipped + 1:]
    assert reason(s, "GET", url.replace(sig, one_letter)) == "bad_signature"
    assert reason(s, "GET", url.replace(sig, sig + "=")) == "malformed"
    assert reason(s, "GET", url.replace(sig, sig[:-1])) == "malformed"
    assert reason(s, "GET", url + "&sig=" + sig) == "malformed"
    assert reason(s, "GET", url.replace(f"exp={expires}", "exp=soon")) == "malformed"
    assert reason(s, "GET", url.replace("&kid=kb", "")) == "missing"
    assert reason(s, "GET", "/files/a.pdf") == "missing"
    assert reason(s, "GET", url.replace("kid=kb", "kid=kz")) == "unknown_key"


def test_expiry_has_a_small_leeway_and_a_ceiling() -> None:
    clock = Clock()
    s = signer(clock)
    url, expires = s.sign("GET", "/f", ttl=10)
    clock.now = expires + 30
    assert reason(s, "GET", url) is None
    clock.now = expires + 31
    assert reason(s, "GET", url) == "expired"
    # A signer with the key but a longer max_ttl cannot mint URLs this gateway keeps open.
    clock.now = NOW
    lax = UrlSigner({"kb": KEY_B}, "kb", leeway=30, max_ttl=10 * 86_400, clock=clock)
    far, _ = lax.sign("GET", "/f", ttl=5 * 86_400)
    assert reason(s, "GET", far) == "too_far"


def test_rotation_and_retirement() -> None:
    clock = Clock()
    before = signer(clock, {"ka": KEY_A}, "ka")
    old, _ = before.sign("GET", "/f", ttl=60)
    during = signer(clock, {"kb": KEY_B, "ka": KEY_A}, "kb")
    assert reason(during, "GET", old) is None  # the previous key still verifies
    new, _ = during.sign("GET", "/f", ttl=60)
    assert "kid=kb" in new
    after = signer(clock, {"kb": KEY_B}, "kb")
    assert reason(after, "GET", old) == "unknown_key"  # retired
    assert reason(after, "GET", new) is None


def test_bindings() -> None:
    clock = Clock()
    s = signer(clock)
    by_ip, _ = s.sign("GET", "/f", ttl=60, binding=bind_ip("10.0.0.7"))
    assert reason(s, "GET", by_ip, bind_ip("10.0.0.7")) is None
    assert reason(s, "GET", by_ip, bind_ip("10.0.0.8")) == "bad_signature"
    assert reason(s, "GET", by_ip) == "bad_signature"
    by_subject, _ = s.sign("GET", "/f", ttl=60, binding=bind_subject("alice"))
    assert reason(s, "GET", by_subject, bind_subject("alice")) is None
    assert reason(s, "GET", by_subject, bind_subject("bob")) == "bad_signature"


@pytest.mark.parametrize(
    ("path", "query", "kwargs", "words"),
    [
        ("/a/../b", b"", {}, "sign the normalized path: '/b'"),
        ("/a%2fb", b"", {}, "cannot be signed"),
        ("/f", b"sig=x", {}, "already holds"),
        ("/f", b"", {"ttl": 86_401}, "ttl must be between"),
        ("/f", b"", {"key_id": "kz"}, "unknown key id 'kz'"),
    ],
)
def test_signing_refuses_what_could_never_verify(path: str, query: bytes, kwargs: dict[str, object],
                                                 words: str) -> None:
    options: dict[str, object] = {"ttl": 60, **kwargs}
    with pytest.raises(ValueError, match=words):
        signer(Clock()).sign("GET", path, query=query, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="verify_only"):
        signer(Clock(), signing=None).sign("GET", "/f", ttl=60)
