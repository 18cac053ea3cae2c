"""Load, interpolate, override and validate a configuration file.

The result, ``LoadedConfig``, is immutable and holds validated structs only: every
plugin's config is already converted, so ``gatehouse check`` reports every error that
startup would, and each worker builds its runtime objects from it without re-validating.

Precedence, lowest first: the file, then environment variables, then CLI flags.

- ``${VAR}`` and ``${VAR:-default}`` inside string values are replaced from the
  environment (an unset variable without default is an error naming the field).
- ``GATEHOUSE_HOST``, ``GATEHOUSE_PORT``, ``GATEHOUSE_WORKERS``, ``REDIS_URL`` and
  ``<NAME>_SERVICE_URL`` (comma-separated instance URLs) override the file.
- ``SERVICE_ENDPOINT_OVERRIDES``, ``ROUTES_ENABLED`` and ``ROUTES_DISABLED`` point services
  elsewhere and switch routes off (``controlplane.config.env_overrides``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml

from controlplane.config.env_overrides import EnvChanges, apply_service_urls, disabled_routes
from controlplane.config.errors import ConfigError, join_path, split_msgspec_error
from controlplane.config.registry import PluginRegistry
from controlplane.config.schema import GatewayConfig, RouteConfig, ServiceConfig
from hotpath.plugin import Plugin
from hotpath.templates import Template, TemplateConflict, TemplateError, TemplateTree, is_template

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
RESERVED_PATHS = ("/health", "/metrics")


class ValidatedRoute(msgspec.Struct, frozen=True):
    config: RouteConfig
    # (plugin class, validated per-route config), in the order written.
    plugins: tuple[tuple[type[Plugin[Any]], msgspec.Struct], ...]
    # Plugins the route switched off with ``name: false``.
    switched_off: frozenset[str] = frozenset()


class LoadedConfig(msgspec.Struct, frozen=True):
    file: str
    gateway: GatewayConfig
    services: dict[str, ServiceConfig]
    routes: tuple[ValidatedRoute, ...]
    plugin_settings: dict[str, msgspec.Struct]
    registry: PluginRegistry
    # ``default_plugins`` validated, without those switched off (``name: false``).
    default_plugins: dict[str, msgspec.Struct] = {}
    # Routes switched off and services pointed elsewhere by the environment.
    env: EnvChanges = EnvChanges()

    @property
    def state_backend(self) -> str:
        backend = self.gateway.state.backend
        if backend == "auto":
            return "redis" if self.gateway.redis.url else "memory"
        return backend


class _Locator:
    """Maps a YAML path (``routes[0].plugins.auth``) to its line in the file."""

    def __init__(self, text: str) -> None:
        try:
            self._root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self._root = None

    def line(self, path: str) -> int | None:
        node = self._root
        if node is None:
            return None
        best = node.start_mark.line + 1
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            if isinstance(node, yaml.MappingNode):
                nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
                if nxt is None:
                    key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                    return key.start_mark.line + 1 if key is not None else best
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
                idx = int(part[1:-1])
                if idx >= len(node.value):
                    return best
                node = node.value[idx]
            else:
                return best
            best = node.start_mark.line + 1
        return best


def locate_line(file: str, path: str) -> int | None:
    """The line of a YAML path in a config file (for errors found after loading)."""
    try:
        with open(file, encoding="utf-8") as fh:
            return _Locator(fh.read()).line(path)
    except OSError:
        return None


class _Context:
    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.locator = _Locator(text)

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.file, path, message, self.locator.line(path))

    def convert(self, value: Any, typ: type[T], path: str) -> T:
        try:
            return msgspec.convert(value, typ, strict=False)
        except msgspec.ValidationError as exc:
            rel, msg = split_msgspec_error(_name_dict_keys(value, typ, str(exc)))
            raise self.error(join_path(path, rel), msg) from None


_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _name_dict_keys(value: Any, typ: type[Any], message: str) -> str:
    """Replace msgspec's ``[...]`` (an entry of a mapping, key unnamed) with the real key.

    Each mapping on the path is narrowed to one entry at a time until the same error
    reappears; that entry's key is the one at fault. Only runs on the error path.
    """
    resolved = message
    while "[...]" in resolved:
        at = resolved.rfind(" - at `$")
        if at < 0:
            break
        path = resolved[at + len(" - at `$") : -1]
        head = path[: path.index("[...]")]
        container = _navigate(value, head)
        if not isinstance(container, dict):
            break
        culprit = None
        for key in container:
            try:
                msgspec.convert(_narrowed(value, head, key), typ, strict=False)
            except msgspec.ValidationError as exc:
                if str(exc) == message:
                    culprit = key
                    break
        if culprit is None:
            break
        resolved = resolved.replace("[...]", f".{culprit}", 1)
    return resolved


def _navigate(value: Any, path: str) -> Any:
    for m in _SEGMENT.finditer(path):
        if m.group(1) is not None:
            if not isinstance(value, dict) or m.group(1) not in value:
                return None
            value = value[m.group(1)]
        else:
            idx = int(m.group(2))
            if not isinstance(value, list | tuple) or idx >= len(value):
                return None
            value = value[idx]
    return value


def _narrowed(value: Any, path: str, key: Any) -> Any:
    """A copy of ``value`` whose mapping at ``path`` keeps only ``key``."""
    segments = list(_SEGMENT.finditer(path))
    if not segments:
        return {key: value[key]}
    m = segments[0]
    rest = path[m.end() :]
    if m.group(1) is not None:
        return {**value, m.group(1): _narrowed(value[m.group(1)], rest, key)}
    idx = int(m.group(2))
    items = list(value)
    items[idx] = _narrowed(items[idx], rest, key)
    return items


def load_config(
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: PluginRegistry | None = None,
) -> LoadedConfig:
    env = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    return load_config_text(text, path, environ=env, overrides=overrides, registry=registry)


def load_config_text(
    text: str,
    file: str,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    registry: PluginRegistry | None = None,
) -> LoadedConfig:
    ctx = _Context(file, text)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, "", f"not valid YAML: {getattr(exc, 'problem', exc)}", line) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ctx.error("", "the top level must be a mapping")
    raw = _interpolate(raw, "", environ, ctx)
    _apply_env_overrides(raw, environ)
    service_urls = apply_service_urls(raw, environ, env_name_for_service)
    for dotted, value in (overrides or {}).items():
        _set_path(raw, dotted, value)

    gateway = ctx.convert(raw, GatewayConfig, "")
    for i, cidr in enumerate(gateway.server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ctx.error(f"server.trusted_proxies[{i}]", f"'{cidr}' is not an IP address or CIDR") from None
    services = {
        name: ctx.convert(svc, ServiceConfig, f"services.{name}") for name, svc in gateway.services.items()
    }
    for name, svc in services.items():
        _check_service(ctx, name, svc)

    reg = registry or PluginRegistry.default()
    for i, module in enumerate(gateway.plugin_modules):
        try:
            reg = reg.with_dotted(module)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise ctx.error(f"plugin_modules[{i}]", f"cannot load plugin '{module}': {exc}") from None

    settings: dict[str, msgspec.Struct] = {}
    for name, value in gateway.plugins.items():
        cls = reg.get(name)
        if cls is None:
            raise ctx.error(f"plugins.{name}", f"unknown plugin (known: {', '.join(reg.names())})")
        if cls.settings_type is None:
            raise ctx.error(f"plugins.{name}", "this plugin has no global settings")
        parsed = ctx.convert(value if value is not None else {}, cls.settings_type, f"plugins.{name}")
        try:
            cls.validate_settings(parsed)
        except ValueError as exc:
            raise ctx.error(f"plugins.{name}", str(exc)) from None
        settings[name] = parsed
    for name, cls in reg.items():
        if name not in settings and cls.settings_type is not None:
            settings[name] = ctx.convert({}, cls.settings_type, f"plugins.{name}")

    defaults: dict[str, msgspec.Struct] = {}
    for pname, pvalue in gateway.default_plugins.items():
        cls = reg.get(pname)
        if cls is None:
            raise ctx.error(f"default_plugins.{pname}", f"unknown plugin (known: {', '.join(reg.names())})")
        if pvalue is not False:
            defaults[pname] = ctx.convert(pvalue if pvalue is not None else {}, cls.config_type,
                                          f"default_plugins.{pname}")

    routes: list[ValidatedRoute] = []
    seen_names: set[str] = set()
    for i, raw_route in enumerate(gateway.routes):
        where = f"routes[{i}]"
        route = ctx.convert(raw_route, RouteConfig, where)
        _check_route(ctx, where, route, services, seen_names)
        plugin_cfgs: dict[str, Any] = dict(gateway.default_plugins)
        plugin_cfgs.update(route.plugins)
        plugins: list[tuple[type[Plugin[Any]], msgspec.Struct]] = []
        switched_off: set[str] = set()
        for pname, pvalue in plugin_cfgs.items():
            in_route = pname in route.plugins
            ppath = f"{where}.plugins.{pname}" if in_route else f"default_plugins.{pname}"
            cls = reg.get(pname)
            if cls is None:
                raise ctx.error(ppath, f"unknown plugin (known: {', '.join(reg.names())})")
            if pvalue is False:
                switched_off.add(pname)  # a route switches off a default plugin with `name: false`
                continue
            parsed_cfg = ctx.convert(pvalue if pvalue is not None else {}, cls.config_type, ppath)
            plugins.append((cls, parsed_cfg))
        routes.append(ValidatedRoute(config=route, plugins=tuple(plugins), switched_off=frozenset(switched_off)))
    _check_template_conflicts(ctx, routes)
    disabled = disabled_routes(environ, (r.config.name for r in routes))

    return LoadedConfig(
        file=file,
        gateway=gateway,
        services=services,
        routes=tuple(routes),
        plugin_settings=settings,
        registry=reg,
        default_plugins=defaults,
        env=EnvChanges(disabled_routes=disabled, service_urls=service_urls),
    )


def _check_service(ctx: _Context, name: str, svc: ServiceConfig) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise ctx.error(f"services.{name}", "service names use letters, digits, '_', '-' and '.'")
    if not svc.urls:
        raise ctx.error(f"services.{name}.urls", "at least one instance URL is required")
    for j, url in enumerate(svc.urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ctx.error(f"services.{name}.urls[{j}]", f"'{url}' is not an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ctx.error(f"services.{name}.urls[{j}]", "instance URLs carry no query or fragment")
    if svc.timeouts.connect > svc.timeouts.total or svc.timeouts.read > svc.timeouts.total:
        raise ctx.error(f"services.{name}.timeouts", "connect and read timeouts must not exceed total")


def _check_route(
    ctx: _Context, where: str, route: RouteConfig, services: dict[str, ServiceConfig], seen: set[str]
) -> None:
    if route.name in seen:
        raise ctx.error(f"{where}.name", f"duplicate route name '{route.name}'")
    seen.add(route.name)
    if not route.path.startswith("/"):
        raise ctx.error(f"{where}.path", "must start with '/'")
    from hotpath.paths import UnsafePath, normalize

    literal = route.path
    if is_template(route.path):
        try:
            literal = Template(route.path).static_path
        except TemplateError as exc:
            raise ctx.error(f"{where}.path", f"not a valid path template: {exc}") from None
    try:
        canonical = normalize(literal.encode("ascii", "strict"))
    except (UnsafePath, UnicodeEncodeError) as exc:
        raise ctx.error(f"{where}.path", f"not a normalized path: {exc}") from None
    if canonical != literal and canonical + "/" != literal:
        raise ctx.error(f"{where}.path", f"write the path in normalized form: '{canonical}'")
    for reserved in RESERVED_PATHS:
        if route.path == reserved or route.path.startswith(reserved + "/"):
            raise ctx.error(f"{where}.path", f"'{reserved}' is reserved for the gateway's own endpoints")
    if route.service not in services:
        known = ", ".join(sorted(services)) or "none defined"
        raise ctx.error(f"{where}.service", f"unknown service '{route.service}' (services: {known})")
    for j, m in enumerate(route.methods):
        if not re.fullmatch(r"[A-Z]+", m):
            raise ctx.error(f"{where}.methods[{j}]", f"'{m}' is not an upper-case HTTP method")
    if route.upstream_prefix and not route.upstream_prefix.startswith("/"):
        raise ctx.error(f"{where}.upstream_prefix", "must start with '/'")


def _check_template_conflicts(ctx: _Context, routes: list[ValidatedRoute]) -> None:
    """Two templates that match the same paths with the same methods: name both routes."""
    items = [(Template(vr.config.path), vr.config.match, frozenset(vr.config.methods), i)
             for i, vr in enumerate(routes) if is_template(vr.config.path)]
    try:
        TemplateTree(items)
    except TemplateConflict as conflict:
        first, second = items[conflict.first][3], items[conflict.second][3]
        line = ctx.locator.line(f"routes[{first}].path")
        raise ctx.error(
            f"routes[{second}].path",
            f"route '{routes[second].config.name}' conflicts with route '{routes[first].config.name}' "
            f"(routes[{first}].path, {ctx.file}:{line}): {conflict}",
        ) from None


def _interpolate(value: Any, path: str, env: Mapping[str, str], ctx: _Context) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ctx.error(path, f"environment variable {name} is not set and has no default")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, join_path(path, str(k)), env, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, ctx) for i, v in enumerate(value)]
    return value


def env_name_for_service(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_SERVICE_URL"


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for var, dotted, conv in (
        ("GATEHOUSE_HOST", "server.host", str),
        ("GATEHOUSE_PORT", "server.port", int),
        ("GATEHOUSE_WORKERS", "server.workers", int),
        ("REDIS_URL", "redis.url", str),
    ):
        if env.get(var):
            try:
                _set_path(raw, dotted, conv(env[var]))
            except ValueError:
                raise ConfigError(f"${var}", dotted, f"'{env[var]}' is not a valid {conv.__name__}") from None


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
