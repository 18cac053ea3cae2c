"""Security response headers: HSTS, nosniff, a frame policy, a referrer policy and a CSP,
on every answer of a route (see docs/security-headers.md)."""

from plugins.security_headers.plugin import SecurityHeadersPlugin

__all__ = ["SecurityHeadersPlugin"]
