"""The plugin contract.

A plugin is one package (or module) holding one ``Plugin`` subclass. It declares:

- ``name``: the key used in the YAML file (``routes[].plugins.<name>``);
- ``priority``: higher runs earlier in the request phase (and later in the response phase);
- ``config_type``: a struct (``hotpath.structs.Strict``) with defaults and bounds for the
  per-route settings;
- ``settings_type`` (optional): a struct for the global section ``plugins.<name>``;
- any of three phase hooks:

  - ``on_request(ctx) -> Verdict``: ``CONTINUE`` (None) to go on, or a ``LocalResponse`` to
    answer and stop the chain. Refusals (401, 403, 429, ...) are answers like any other:
    ``CannedError.response`` builds them, with a ``Refusal`` saying why. A plugin never
    raises to refuse; an exception from a hook is a fault (500);
  - ``on_response(ctx, head)``: may change the upstream response's status or headers
    before they are sent, and may return a ``BodyTap`` to observe the body;
  - ``on_log(ctx)``: runs after the response is sent; must not block.

The constructor compiles everything it can (header names as bytes, key prefixes, canned
answers); per-worker resources (connections, background tasks) start in ``startup``.
For each route, the chain of each phase is composed once from the plugins that override
that hook, so no per-request lookup decides who runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final, Generic, TypeVar

import msgspec

from hotpath.context import BodyTap as BodyTap
from hotpath.context import Header, RequestContext
from hotpath.context import RouteInfo as RouteInfo
from hotpath.responses import LocalResponse as LocalResponse
from hotpath.responses import ResponseHead as ResponseHead
from hotpath.runtime import WorkerRuntime

# What a request hook returns: None to continue, or the answer that ends the chain.
Verdict = LocalResponse | None
CONTINUE: Final = None

ConfigT = TypeVar("ConfigT", bound=msgspec.Struct)


class PluginSetup:
    """What a plugin constructor receives besides its own config."""

    __slots__ = ("config_dir", "route", "runtime", "settings")

    def __init__(
        self, route: RouteInfo, settings: msgspec.Struct | None, runtime: WorkerRuntime, config_dir: str = "."
    ) -> None:
        self.route = route
        self.settings = settings
        self.runtime = runtime
        # The config file's directory: files a plugin's config names are relative to it.
        self.config_dir = config_dir


class Plugin(Generic[ConfigT]):
    name: ClassVar[str]
    priority: ClassVar[int] = 0
    config_type: ClassVar[type[msgspec.Struct]]
    settings_type: ClassVar[type[msgspec.Struct] | None] = None
    # True when the plugin's decisions must be shared by every worker (rate limits): the
    # in-process state backend then refuses to run with more than one worker.
    shared_state: ClassVar[bool] = False

    def __init__(self, config: ConfigT, setup: PluginSetup) -> None:
        self.config = config
        self.route = setup.route

    async def on_request(self, ctx: RequestContext) -> Verdict:
        return CONTINUE

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        return None

    def on_log(self, ctx: RequestContext) -> None:
        return None

    @classmethod
    def validate_settings(cls, settings: msgspec.Struct | None) -> None:
        """Cross-field checks on the global settings; raise ValueError with a message."""

    def check(self) -> None:
        """Cross-field checks on the per-route config after construction; raise ValueError."""

    def owned_headers(self) -> tuple[str, ...]:
        """Request headers this plugin owns, removed from every client request before it is
        forwarded, on every route (like ``server.identity_headers``): a credential it reads
        (an API-key header) or a header it sets from a trusted answer (forward auth), so that
        no client can hand an upstream its own copy. Asked once, when the gateway is built."""
        return ()

    @classmethod
    def unrouted_headers(cls, config: msgspec.Struct) -> list[Header]:
        """Response headers for the gateway's answers to requests that match no route (404,
        405, a path refused before routing), when ``default_plugins`` applies this plugin to
        every route with ``config``. Asked once, when the gateway is built."""
        return []

    def uses(self, hook: str) -> bool:
        """Whether this instance needs ``hook`` on its route: by default, whether its class
        implements it. A plugin whose config leaves a phase idle says no, and costs nothing
        there."""
        return overrides(self, hook)


RequestHook = Callable[[RequestContext], Awaitable[Verdict]]
ResponseHook = Callable[[RequestContext, ResponseHead], Awaitable[BodyTap | None]]
LogHook = Callable[[RequestContext], None]


def overrides(plugin: Plugin[Any], hook: str) -> bool:
    """True if the plugin's class implements ``hook`` itself (not the no-op default)."""
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


class Chain:
    """One route's plugins, composed per phase at startup."""

    __slots__ = ("log", "plugins", "request", "response")

    def __init__(self, plugins: list[Plugin[Any]]) -> None:
        ordered = sorted(plugins, key=lambda p: -p.priority)
        self.plugins: tuple[Plugin[Any], ...] = tuple(ordered)
        self.request: tuple[RequestHook, ...] = tuple(p.on_request for p in ordered if p.uses("on_request"))
        # Response hooks unwind in reverse, like a middleware stack.
        self.response: tuple[ResponseHook, ...] = tuple(
            p.on_response for p in reversed(ordered) if p.uses("on_response")
        )
        self.log: tuple[LogHook, ...] = tuple(p.on_log for p in ordered if p.uses("on_log"))
