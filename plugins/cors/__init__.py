"""``cors``: answers preflights at the gateway and adds CORS headers to actual responses."""

from plugins.cors.plugin import CorsConfig, CorsPlugin

__all__ = ["CorsConfig", "CorsPlugin"]
