"""``plugins.signed_url`` (the keys) and ``routes[].plugins.signed_url`` (verify or issue).

::

    plugins:
      signed_url:
        keys:
          - {id: k2026b, secret: "${URL_KEY_B}"}
          - {id: k2026a, secret: "${URL_KEY_A}", verify_only: true}   # retiring
    routes:
      - name: files
        path: /files
        service: storage
        plugins:
          signed_url: {}                       # verify
      - name: job-download-link
        path: /api/v1/jobs/{id}/download
        service: jobs
        plugins:
          auth: {}
          signed_url: {mode: issue, target: "/files/jobs/{id}/output.mp4", ttl: 3600}

docs/signed-urls.md is the reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from hotpath.structs import Strict
from hotpath.templates import Template, TemplateError

KeyId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,32}$")]
# HMAC-SHA256 keys shorter than the hash add nothing but risk (RFC 2104 section 3).
MIN_SECRET_BYTES: Final = 32
DAY: Final = 86_400
_BASE_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")


class UrlKey(Strict, frozen=True, kw_only=True):
    id: KeyId
    # The HMAC key; use ${VAR} so it lives in the environment.
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    # Still verifies URLs signed with it, never signs new ones (a key being retired).
    verify_only: bool = False

    def __post_init__(self) -> None:
        if len(self.secret.encode("utf-8")) < MIN_SECRET_BYTES:
            raise ValueError(f"secret of key '{self.id}' must be at least {MIN_SECRET_BYTES} bytes")


class SignedUrlSettings(Strict, frozen=True, kw_only=True):
    keys: tuple[UrlKey, ...] = ()
    # The key new URLs are signed with; default: the first key that is not verify_only.
    sign_with: KeyId | None = None
    # Seconds an URL is still accepted after its expiry (clock skew between signer and gateway).
    leeway: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30.0
    # Longest lifetime of an URL, for signing and for verifying: an URL claiming a later
    # expiry is refused, whoever signed it.
    max_ttl: Annotated[int, msgspec.Meta(ge=1, le=366 * DAY)] = 7 * DAY

    def __post_init__(self) -> None:
        ids = [k.id for k in self.keys]
        for key_id in ids:
            if ids.count(key_id) > 1:
                raise ValueError(f"keys: id '{key_id}' is used twice")
        if self.sign_with is not None:
            chosen = next((k for k in self.keys if k.id == self.sign_with), None)
            if chosen is None:
                raise ValueError(f"sign_with: '{self.sign_with}' is not one of the keys")
            if chosen.verify_only:
                raise ValueError(f"sign_with: key '{self.sign_with}' is verify_only")

    @property
    def signing_key(self) -> str | None:
        if self.sign_with is not None:
            return self.sign_with
        return next((k.id for k in self.keys if not k.verify_only), None)


class SignedUrlConfig(Strict, frozen=True, kw_only=True):
    # verify: refuse requests without a valid signature; issue: answer with a signed URL.
    mode: Literal["verify", "issue"] = "verify"
    # What a signature is bound to besides the URL: the client's address, or the caller's
    # subject (the route needs auth then). Issuing and verifying routes must agree.
    bind: Literal["none", "ip", "subject"] = "none"
    # verify: pass exp, kid and sig on to the upstream instead of removing them.
    forward_signature: bool = False
    # issue: the path to sign, a template like a route's: {name} (or {name:int}, ...) takes
    # the route template's parameter of that name.
    target: str | None = None
    # issue: seconds the URL is valid (at most plugins.signed_url.max_ttl).
    ttl: Annotated[int, msgspec.Meta(ge=1, le=366 * DAY)] = 3600
    # issue: the method the URL is for.
    method: Literal["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"] = "GET"
    # issue: put before the path in the answer (https://files.example.com); default none.
    base_url: str | None = None

    def __post_init__(self) -> None:
        if self.mode == "issue":
            if self.target is None:
                raise ValueError("mode issue needs target (the path to sign)")
            if not self.target.startswith("/") or "?" in self.target or "#" in self.target:
                raise ValueError("target must be a path starting with '/', without query or fragment")
            try:
                Template(self.target)
            except TemplateError as exc:
                raise ValueError(f"target: {exc}") from None
            if self.base_url is not None and not _BASE_URL.match(self.base_url):
                raise ValueError(f"base_url: '{self.base_url}' is not an http(s) URL without query")
        elif self.target is not None or self.base_url is not None:
            raise ValueError("target and base_url belong to mode issue")
