"""The effective configuration with its secrets replaced, for ``GET /config``.

A value is secret when its key names one (token, secret, password, private key,
authorization, cookie, hash key, API key and its hash, export headers) or when it is a URL carrying
credentials (``redis://user:pass@host`` keeps the user and host, loses the password).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

REDACTED = "***"

_SECRET_KEY = re.compile(
    r"(^|_|-)(token|secret|password|passwd|pwd|private_key|client_secret|authorization|cookie|credentials?"
    r"|api_?key|hash_key|hmac_key|signing_key|jwks?_key)s?($|_|-)",
    re.IGNORECASE,
)
# Mappings whose every value is secret (headers sent to a collector, for example).
_SECRET_MAPS = frozenset({"headers"})


def is_secret_key(key: str) -> bool:
    if key.endswith("_env"):  # names an environment variable, not its value
        return False
    # "hash": an API key's digest, which would let weak keys be guessed offline.
    return bool(_SECRET_KEY.search(key)) or key.lower() in ("token", "key", "secret", "hash")


def _redact_url(value: str) -> str:
    if "@" not in value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return REDACTED
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:{REDACTED}@" if parts.username and parts.password else f"{REDACTED}@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        if key.lower() in _SECRET_MAPS:
            return {str(k): REDACTED for k in value}
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if key and is_secret_key(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return _redact_url(value)
    return value


def effective_config(loaded: Any) -> dict[str, Any]:
    """The whole compiled configuration (defaults filled in), secrets redacted."""
    gateway = msgspec.to_builtins(loaded.gateway)
    gateway["services"] = msgspec.to_builtins(loaded.services)
    routes = []
    for vr in loaded.routes:
        route = msgspec.to_builtins(vr.config)
        route["plugins"] = {cls.name: msgspec.to_builtins(cfg) for cls, cfg in vr.plugins}
        routes.append(route)
    gateway["routes"] = routes
    gateway["plugins"] = {name: msgspec.to_builtins(s) for name, s in loaded.plugin_settings.items()}
    result = redact(gateway)
    assert isinstance(result, dict)
    return result
