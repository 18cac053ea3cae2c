"""Configuration errors: they stop startup and say exactly where the problem is."""

from __future__ import annotations

import re

_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


class ConfigError(Exception):
    """An invalid configuration, located by file, YAML path and field."""

    def __init__(self, file: str, path: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.path = path or "(top level)"
        self.message = message
        self.line = line
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {self.path}: {message}")


def join_path(base: str, suffix: str) -> str:
    """Join YAML paths written as ``services.users.timeouts`` / ``routes[0].plugins``."""
    if not base:
        return suffix.lstrip(".")
    if not suffix:
        return base
    if suffix.startswith("["):
        return base + suffix
    return f"{base}.{suffix.lstrip('.')}"


def split_msgspec_error(message: str) -> tuple[str, str]:
    """Turn msgspec's ``"... - at `$.a[0].b`"`` into (relative path, message).

    Unknown and missing fields are folded into the path so the reader sees the field name
    at the end of the path, as the brief asks.
    """
    path = ""
    m = _MSGSPEC_PATH.search(message)
    if m:
        path = m.group("path")
        message = message[: m.start()]
    for pattern, text in ((_UNKNOWN_FIELD, "unknown key (allowed keys are listed in docs/configuration.md)"),
                          (_MISSING_FIELD, "required key is missing")):
        f = pattern.match(message)
        if f:
            return join_path(path.lstrip("."), f.group("field")), text
    return path.lstrip("."), message
