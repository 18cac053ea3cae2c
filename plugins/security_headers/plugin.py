"""The ``security_headers`` plugin: security response headers on every answer of a route.

The headers are compiled once. In the request phase they join the response headers of the
request, so they reach every answer: proxied, local (a cache hit, a preflight, a signed
link) and errors (a refusal, a 502 or 504 from the proxy). In the response phase, a header
the upstream set itself wins over the gateway's, unless the route says ``override: true``;
that check costs one scan of the response headers.

Answers to requests that match no route get the headers of ``default_plugins``
(``unrouted_headers``).
"""

from __future__ import annotations

from typing import ClassVar, Final

import msgspec

from hotpath.context import Header, RequestContext
from hotpath.plugin import CONTINUE, BodyTap, Plugin, PluginSetup, Verdict
from hotpath.responses import ResponseHead
from plugins.security_headers.config import Hsts, SecurityHeadersConfig

HSTS: Final = b"strict-transport-security"
NOSNIFF: Final = (b"x-content-type-options", b"nosniff")
FRAME: Final = b"x-frame-options"
REFERRER: Final = b"referrer-policy"
CSP: Final = b"content-security-policy"
CSP_REPORT_ONLY: Final = b"content-security-policy-report-only"


def compile_headers(config: SecurityHeadersConfig) -> list[Header]:
    out: list[Header] = []
    hsts = Hsts() if config.hsts is True else config.hsts
    if isinstance(hsts, Hsts):
        value = f"max-age={hsts.max_age}"
        if hsts.include_subdomains:
            value += "; includeSubDomains"
        if hsts.preload:
            value += "; preload"
        out.append((HSTS, value.encode("ascii")))
    if config.content_type_options:
        out.append(NOSNIFF)
    if isinstance(config.frame_options, str):
        out.append((FRAME, config.frame_options.encode("ascii")))
    if isinstance(config.referrer_policy, str):
        out.append((REFERRER, config.referrer_policy.encode("ascii")))
    if isinstance(config.content_security_policy, str):
        csp = CSP_REPORT_ONLY if config.csp_report_only else CSP
        out.append((csp, config.content_security_policy.encode("ascii")))
    for name, extra in config.extra.items():
        out.append((name.encode("ascii"), extra.encode("ascii")))
    return out


class SecurityHeadersPlugin(Plugin[SecurityHeadersConfig]):
    name: ClassVar[str] = "security_headers"
    # Before every plugin that may answer (cors preflights, auth refusals, the cache), so
    # those answers carry the headers too.
    priority: ClassVar[int] = 2500
    config_type: ClassVar[type[msgspec.Struct]] = SecurityHeadersConfig

    def __init__(self, config: SecurityHeadersConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        self._headers = compile_headers(config)
        self._names = frozenset(name for name, _ in self._headers)
        self._count = len(self._headers)
        self._override = config.override

    @classmethod
    def unrouted_headers(cls, config: msgspec.Struct) -> list[Header]:
        return compile_headers(config) if isinstance(config, SecurityHeadersConfig) else []

    def uses(self, hook: str) -> bool:
        if not self._headers:
            return False  # every header switched off: nothing to do in any phase
        return super().uses(hook)

    async def on_request(self, ctx: RequestContext) -> Verdict:
        ctx.response_headers.extend(self._headers)
        return CONTINUE

    async def on_response(self, ctx: RequestContext, head: ResponseHead) -> BodyTap | None:
        names = self._names
        seen = 0
        for k, _ in head.headers:
            if k in names:
                seen += 1
        if seen > self._count:
            # The upstream set some of these headers too (the gateway's copies come last).
            head.headers = settle(head.headers, self._headers, names, self._override)
        return None


def settle(headers: list[Header], ours: list[Header], names: frozenset[bytes], override: bool) -> list[Header]:
    """``headers`` with one value per header of ``ours`` that appears more than once: the
    upstream's (the first ones), or, with ``override``, ours."""
    counts: dict[bytes, int] = {}
    for k, _ in headers:
        if k in names:
            counts[k] = counts.get(k, 0) + 1
    clashing = {k for k, n in counts.items() if n > 1}
    mine = {k: v for k, v in ours if k in clashing}
    out: list[Header] = []
    if override:
        for h in headers:
            k = h[0]
            if k in clashing:
                value = mine.get(k)
                if value is None or h[1] != value:
                    continue  # the upstream's copy
                del mine[k]  # ours, once
            out.append(h)
        return out
    # Drop our copy of each clashing header: the last entry with our value.
    drop: set[int] = set()
    for i in range(len(headers) - 1, -1, -1):
        k, v = headers[i]
        if k in mine and v == mine[k]:
            drop.add(i)
            del mine[k]
    return [h for i, h in enumerate(headers) if i not in drop]
