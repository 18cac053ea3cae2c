"""Request validation at the edge: path parameters, query strings and JSON bodies against
JSON Schema, allowed body types, and uploads checked while they stream (docs/validation.md)."""

from plugins.validate.plugin import ValidatePlugin

__all__ = ["ValidatePlugin"]
