"""Signed URLs: verify links that carry an HMAC signature and an expiry, and issue them
(see docs/signed-urls.md)."""

from plugins.signed_url.plugin import SignedUrlPlugin

__all__ = ["SignedUrlPlugin"]
