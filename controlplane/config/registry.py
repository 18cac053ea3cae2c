"""Where plugin classes come from: built-ins, entry points, and dotted paths from the config."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from hotpath.plugin import Plugin

ENTRY_POINT_GROUP = "gatehouse.plugins"

# Built-in plugins by config name. Each value is "module:Class".
BUILTINS: dict[str, str] = {
    "auth": "plugins.auth:AuthPlugin",
    "cache": "plugins.cache:CachePlugin",
    "audit": "plugins.audit:AuditPlugin",
    "cors": "plugins.cors:CorsPlugin",
    "forward_auth": "plugins.forward_auth:ForwardAuthPlugin",
    "rate_limit": "plugins.rate_limit:RateLimitPlugin",
    "security_headers": "plugins.security_headers:SecurityHeadersPlugin",
    "signed_url": "plugins.signed_url:SignedUrlPlugin",
    "validate": "plugins.validate:ValidatePlugin",
}


def import_plugin(dotted: str) -> type[Plugin[Any]]:
    """Import ``package.module:Class`` (or ``package.module.Class``) and check it is a plugin."""
    if ":" in dotted:
        module_name, _, attr = dotted.partition(":")
    else:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise ValueError("expected 'package.module:PluginClass'")
    obj = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(obj, type) and issubclass(obj, Plugin)):
        raise TypeError(f"{dotted} is not a gatehouse Plugin subclass")
    for required in ("name", "config_type"):
        if not hasattr(obj, required):
            raise TypeError(f"{dotted} does not declare '{required}'")
    return obj


class PluginRegistry:
    """An immutable name -> plugin class mapping; ``with_dotted`` returns a new registry."""

    __slots__ = ("_classes",)

    def __init__(self, classes: dict[str, type[Plugin[Any]]]) -> None:
        self._classes = dict(classes)

    @classmethod
    def default(cls) -> PluginRegistry:
        classes = {name: import_plugin(path) for name, path in BUILTINS.items()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            plugin = ep.load()
            if not (isinstance(plugin, type) and issubclass(plugin, Plugin)):
                raise TypeError(f"entry point {ep.name} ({ep.value}) is not a gatehouse Plugin subclass")
            classes[plugin.name] = plugin
        return cls(classes)

    def with_dotted(self, dotted: str) -> PluginRegistry:
        plugin = import_plugin(dotted)
        classes = dict(self._classes)
        classes[plugin.name] = plugin
        return PluginRegistry(classes)

    def get(self, name: str) -> type[Plugin[Any]] | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def items(self) -> Iterator[tuple[str, type[Plugin[Any]]]]:
        return iter(sorted(self._classes.items()))
