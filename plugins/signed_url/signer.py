"""Signing and verifying URLs: HMAC-SHA256 over a canonical form of the request.

The canonical form (version 1) is five lines joined by ``\\n``::

    GATEHOUSE-URL-V1
    <method>          GET for GET and HEAD; otherwise the method as sent
    <path>            the normalized path (hotpath/paths.py), as routed
    <query>           every name=value pair but sig, exp and kid included, as sent
                      (percent-encoding untouched), sorted as byte strings, joined by &
    <binding>         empty, ip:<client address> or sub:<subject>

The signature is the HMAC-SHA256 of those bytes under the key named by ``kid``, encoded
in base64url without padding (RFC 4648 section 5: 43 characters), and compared as text
with ``hmac.compare_digest``: only that exact encoding passes, so a signature with any
letter changed in case is refused. ``exp`` is the expiry in Unix seconds.

Exceptions: ``Refused`` (``reason`` says why, for audit events and metrics; the client is
told only "invalid or expired").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Final

from hotpath.paths import UnsafePath, normalize

VERSION: Final = b"GATEHOUSE-URL-V1"
SIG: Final = b"sig"
EXP: Final = b"exp"
KID: Final = b"kid"
SIGNATURE_CHARS: Final = 43
_SIGNATURE: Final = re.compile(rb"[A-Za-z0-9_\-]{43}")
_EXPIRY: Final = re.compile(rb"[0-9]{1,12}")
_NAMES: Final = frozenset({SIG, EXP, KID})
new_hmac: Final = hmac.new
sha256: Final = hashlib.sha256
compare_digest: Final = hmac.compare_digest
b64encode: Final = base64.urlsafe_b64encode

MISSING: Final = "missing"
MALFORMED: Final = "malformed"
UNKNOWN_KEY: Final = "unknown_key"
BAD_SIGNATURE: Final = "bad_signature"
EXPIRED: Final = "expired"
TOO_FAR: Final = "too_far"
UNBOUND: Final = "unbound"

Clock = Callable[[], float]


class Refused(Exception):
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_method(method: str) -> bytes:
    return b"GET" if method in ("GET", "HEAD") else method.encode("ascii")


def canonical(method: str, path: str, signed: list[bytes], binding: bytes) -> bytes:
    return b"\n".join((VERSION, canonical_method(method), path.encode("ascii"), b"&".join(sorted(signed)), binding))


def bind_ip(address: str) -> bytes:
    return b"ip:" + address.encode("ascii", "replace")


def bind_subject(subject: str) -> bytes:
    return b"sub:" + subject.encode("utf-8")


class UrlSigner:
    """The keys of ``plugins.signed_url``, compiled: every key verifies, one signs."""

    __slots__ = ("_clock", "_keys", "_leeway", "_max_ttl", "signing")

    def __init__(
        self, keys: dict[str, bytes], signing: str | None, *, leeway: float, max_ttl: int, clock: Clock = time.time
    ) -> None:
        self._keys: dict[bytes, bytes] = {k.encode("ascii"): v for k, v in keys.items()}
        self.signing = signing
        self._leeway = leeway
        self._max_ttl = max_ttl
        self._clock = clock

    def _mac(self, key: bytes, data: bytes) -> bytes:
        return b64encode(new_hmac(key, data, sha256).digest()).rstrip(b"=")

    def sign(
        self, method: str, path: str, *, ttl: int, query: bytes = b"", binding: bytes = b"", key_id: str | None = None
    ) -> tuple[str, int]:
        """(path?query with exp, kid and sig, expiry). ValueError for a path that is not
        normalized, a query already holding exp, kid or sig, an unknown key or a ttl
        beyond max_ttl."""
        kid = key_id or self.signing
        if kid is None:
            raise ValueError("no key signs URLs (every key is verify_only)")
        key = self._keys.get(kid.encode("ascii"))
        if key is None:
            raise ValueError(f"unknown key id '{kid}'")
        if not 0 < ttl <= self._max_ttl:
            raise ValueError(f"ttl must be between 1 and {self._max_ttl} seconds (max_ttl)")
        try:
            normalized = normalize(path.encode("ascii"))
        except (UnsafePath, UnicodeEncodeError) as exc:
            raise ValueError(f"the path cannot be signed: {exc}") from None
        if normalized != path:
            raise ValueError(f"sign the normalized path: '{normalized}'")
        pairs = [p for p in query.split(b"&") if p] if query else []
        for pair in pairs:
            if pair.partition(b"=")[0] in _NAMES:
                raise ValueError("the query already holds exp, kid or sig")
        expires = int(self._clock()) + ttl
        pairs.append(EXP + b"=" + str(expires).encode("ascii"))
        pairs.append(KID + b"=" + kid.encode("ascii"))
        signature = self._mac(key, canonical(method, path, pairs, binding))
        pairs.append(SIG + b"=" + signature)
        return f"{path}?{b'&'.join(pairs).decode('ascii')}", expires

    def verify(self, method: str, path: str, query: bytes, binding: bytes) -> bytes:
        """The query without exp, kid and sig, when the signature holds; else Refused."""
        signed: list[bytes] = []
        kept: list[bytes] = []
        signature: bytes | None = None
        expiry: bytes | None = None
        kid: bytes | None = None
        for pair in query.split(b"&"):
            if not pair:
                continue
            name, _, value = pair.partition(b"=")
            if name == SIG:
                if signature is not None:
                    raise Refused(MALFORMED)
                signature = value
                continue
            if name == EXP:
                if expiry is not None:
                    raise Refused(MALFORMED)
                expiry = value
            elif name == KID:
                if kid is not None:
                    raise Refused(MALFORMED)
                kid = value
            else:
                kept.append(pair)
            signed.append(pair)
        if signature is None or expiry is None or kid is None:
            raise Refused(MISSING)
        if _SIGNATURE.fullmatch(signature) is None or _EXPIRY.fullmatch(expiry) is None:
            raise Refused(MALFORMED)
        key = self._keys.get(kid)
        if key is None:
            raise Refused(UNKNOWN_KEY)
        expected = self._mac(key, canonical(method, path, signed, binding))
        if not compare_digest(expected, signature):
            raise Refused(BAD_SIGNATURE)
        expires = int(expiry)
        now = self._clock()
        if now > expires + self._leeway:
            raise Refused(EXPIRED)
        if expires > now + self._max_ttl + self._leeway:
            raise Refused(TOO_FAR)
        return b"&".join(kept)
