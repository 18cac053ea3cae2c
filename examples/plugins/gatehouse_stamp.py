"""An example third-party plugin: ``stamp``.

It shows every part of the plugin contract in a few lines (docs/plugins.md walks through it):

- per-route config with defaults and bounds (``StampConfig``), global settings
  (``StampSettings``), both validated at load time;
- request phase: refuse paths under ``deny_prefixes`` with the gateway's uniform 403 (a
  verdict, with the reason the audit plugin records), and tell the upstream which route
  forwarded the request;
- response phase: add a header to the response;
- log phase: count responses per worker, without blocking;
- per-worker resources: a counter shared by every route's instance, via
  ``runtime.singleton``, reset at startup.

Load it with ``plugin_modules: ["gatehouse_stamp:StampPlugin"]`` or install a package
that declares it under the ``gatehouse.plugins`` entry-point group.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, ClassVar

import msgspec

from hotpath.audit import AuditType, Refusal
from hotpath.context import RequestContext
from hotpath.errors import CannedError, ErrorCode
from hotpath.plugin import CONTINUE, BodyTap, Plugin, PluginSetup, ResponseHead, Verdict
from hotpath.structs import Strict

HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")]


CLOSED = CannedError(403, ErrorCode.FORBIDDEN, "this path is closed on this route")
CLOSED_WHY = Refusal(AuditType.FORBIDDEN, "closed_prefix")


class StampConfig(Strict, frozen=True, kw_only=True):
    header: HeaderName = "x-stamp"
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")] = "gatehouse"
    deny_prefixes: tuple[str, ...] = ()


class StampSettings(Strict, frozen=True, kw_only=True):
    # Sent upstream on every stamped route, naming the route that forwarded the request.
    route_header: HeaderName = "x-stamp-route"


class StampPlugin(Plugin[StampConfig]):
    name: ClassVar[str] = "stamp"
    priority: ClassVar[int] = 500  # after auth (1450) and rate limits (900), before cache (100)
    config_type: ClassVar[type[StampConfig]] = StampConfig
    settings_type: ClassVar[type[StampSettings]] = StampSettings

    def __init__(self, config: StampConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, StampSettings) else StampSettings()
        # Compile everything now: the hot path only compares and appends prepared bytes.
        self._stamp = (config.header.encode(), config.value.encode())
        self._route_header = (settings.route_header.encode(), setup.route.name.encode())
        self._deny = tuple(config.deny_prefixes)
        self._counts: Counter[str] = setup.runtime.singleton("stamp.counts", Counter)
        self._route = setup.route.name

    def check(self) -> None:
        for prefix in self._deny:
            if not prefix.startswith("/"):
                raise ValueError(f"deny_prefixes: '{prefix}' must start with '/'")

    async def on_request(self, ctx: RequestContext) -> Verdict:
        if self._deny and ctx.path.startswith(self._deny):
            return CLOSED.response(ctx.request_id, CLOSED_WHY)
        ctx.upstream_headers.append(self._route_header)
        return CONTINUE

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        head.headers.append(self._stamp)
        return None

    def on_log(self, ctx: RequestContext) -> None:
        self._counts[self._route] += 1
