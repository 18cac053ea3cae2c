"""Signing an URL on request, for the admin API and ``gatehouse sign``.

Exceptions: ``NotConfigured`` (``plugins.signed_url`` has no keys) and ``ValueError`` (a
field of the request is invalid), each with a message fit for an answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from plugins.signed_url.config import KeyId, SignedUrlSettings
from plugins.signed_url.plugin import signer_of
from plugins.signed_url.signer import bind_ip, bind_subject

DEFAULT_TTL = 3600


class NotConfigured(LookupError):
    pass


class SignRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # A normalized path, optionally with a query (kept as given, and signed).
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    ttl: int = DEFAULT_TTL
    method: Literal["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"] = "GET"
    key_id: KeyId | None = None
    # Bind the signature to a client address or a subject, as the verifying route does.
    ip: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^/\s?#]+(/[^\s?#]*)?$")] | None = None


def sign(settings: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``{"url", "expires_at", "method", "key_id"}`` for the request in ``body``."""
    if not isinstance(settings, SignedUrlSettings) or not settings.keys:
        raise NotConfigured("plugins.signed_url has no keys")
    try:
        req = msgspec.convert(body, SignRequest, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    if req.ip is not None and req.subject is not None:
        raise ValueError("bind to ip or to subject, not both")
    binding = bind_ip(req.ip) if req.ip is not None else bind_subject(req.subject) if req.subject is not None else b""
    path, _, query = req.path.partition("?")
    try:
        raw_query = query.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("the query must be ASCII (percent-encode other bytes)") from None
    signer = signer_of(settings)
    url, expires = signer.sign(req.method, path, ttl=req.ttl, query=raw_query, binding=binding, key_id=req.key_id)
    base = req.base_url.rstrip("/") if req.base_url else ""
    return {"url": base + url, "expires_at": expires, "method": req.method, "key_id": req.key_id or signer.signing}
