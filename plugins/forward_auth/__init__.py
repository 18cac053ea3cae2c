"""External authorization (forward auth): ask an authorization service before proxying
(see docs/forward-auth.md)."""

from plugins.forward_auth.plugin import ForwardAuthPlugin

__all__ = ["ForwardAuthPlugin"]
