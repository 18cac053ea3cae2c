"""JWT bearer authentication with JWKS key sets (see docs/auth.md)."""

from plugins.auth.plugin import AuthPlugin

__all__ = ["AuthPlugin"]
