"""Operators' switches from the environment: route toggles and service endpoint overrides.

- ``ROUTES_ENABLED``: comma-separated route names. When set, only these routes are
  served; every other route answers 404.
- ``ROUTES_DISABLED``: comma-separated route names that answer 404. It wins over
  ``ROUTES_ENABLED``, so a route can always be switched off during an incident whatever
  the deployment enables.
- ``SERVICE_ENDPOINT_OVERRIDES``: comma-separated ``name=url`` pairs (a name repeated
  gives the service several instances). It wins over the file and over
  ``<NAME>_SERVICE_URL``.

A name that is not a route or service of the file, or a malformed pair or URL, is a
configuration error naming the variable: a typo must never leave a route on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from controlplane.config.errors import ConfigError

ROUTES_ENABLED = "ROUTES_ENABLED"
ROUTES_DISABLED = "ROUTES_DISABLED"
SERVICE_ENDPOINT_OVERRIDES = "SERVICE_ENDPOINT_OVERRIDES"


class EnvChanges(msgspec.Struct, frozen=True, kw_only=True):
    """What the environment changed, for ``gatehouse check`` and the build."""

    # Route name -> the variable that switched it off.
    disabled_routes: dict[str, str] = {}
    # Service name -> the variable its instance URLs come from.
    service_urls: dict[str, str] = {}


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def _error(variable: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"${variable}", path, message)


def check_url(variable: str, service: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(variable, f"services.{service}.urls", f"'{url}' is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise _error(variable, f"services.{service}.urls", f"'{url}': instance URLs carry no query or fragment")


def endpoint_overrides(env: Mapping[str, str], services: Iterable[str]) -> dict[str, list[str]]:
    """``SERVICE_ENDPOINT_OVERRIDES`` parsed and checked against the file's services."""
    value = env.get(SERVICE_ENDPOINT_OVERRIDES, "")
    known = set(services)
    out: dict[str, list[str]] = {}
    for pair in _names(value):
        name, sep, url = pair.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url:
            raise _error(SERVICE_ENDPOINT_OVERRIDES, "services", f"'{pair}' is not a name=url pair")
        if name not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            raise _error(SERVICE_ENDPOINT_OVERRIDES, "services", f"unknown service '{name}' (services: {listed})")
        check_url(SERVICE_ENDPOINT_OVERRIDES, name, url)
        out.setdefault(name, []).append(url)
    return out


def apply_service_urls(
    raw: dict[str, Any], env: Mapping[str, str], per_service_var: Callable[[str], str]
) -> dict[str, str]:
    """Replace the file's instance URLs from ``<NAME>_SERVICE_URL`` and then from
    ``SERVICE_ENDPOINT_OVERRIDES``; returns which variable each changed service came from.

    ``per_service_var`` maps a service name to its ``<NAME>_SERVICE_URL`` variable."""
    services = raw.get("services")
    if not isinstance(services, dict):
        return {}
    changed: dict[str, str] = {}
    for name, svc in services.items():
        var = per_service_var(str(name))
        override = env.get(var)
        if override and isinstance(svc, dict):
            svc["urls"] = [u.strip() for u in override.split(",") if u.strip()]
            changed[str(name)] = var
    for name, urls in endpoint_overrides(env, (str(n) for n in services)).items():
        svc = services.get(name)
        if isinstance(svc, dict):
            svc["urls"] = urls
            changed[name] = SERVICE_ENDPOINT_OVERRIDES
    return changed


def disabled_routes(env: Mapping[str, str], routes: Iterable[str]) -> dict[str, str]:
    """Route name -> the variable that switched it off, from ``ROUTES_ENABLED`` and
    ``ROUTES_DISABLED``."""
    names = list(routes)
    known = set(names)
    listed = ", ".join(names) or "none defined"
    chosen: dict[str, list[str]] = {}
    for variable in (ROUTES_ENABLED, ROUTES_DISABLED):
        value = env.get(variable, "")
        picked = _names(value)
        for name in picked:
            if name not in known:
                raise _error(variable, "routes", f"unknown route '{name}' (routes: {listed})")
        chosen[variable] = picked
    out: dict[str, str] = {}
    enabled = set(chosen[ROUTES_ENABLED])
    if enabled:
        for name in names:
            if name not in enabled:
                out[name] = ROUTES_ENABLED
    for name in chosen[ROUTES_DISABLED]:
        out[name] = ROUTES_DISABLED
    return out
