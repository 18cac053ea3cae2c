"""``routes[].plugins.security_headers`` (or ``default_plugins.security_headers``).

Every field has the default an API should send; ``false`` leaves a header out::

    default_plugins:
      security_headers: {}
    routes:
      - name: docs
        ...
        plugins:
          security_headers:
            content_security_policy: "default-src 'self'"
            frame_options: SAMEORIGIN
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from hotpath.structs import Strict

# What one header value may hold: visible ASCII and spaces, one line.
HeaderValue = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[\x20-\x7e]+$")]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")]
ReferrerPolicy = Literal[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
]
# RFC 6797 section 6.1.1: any non-negative number of seconds; two years bounds a typo.
MAX_HSTS_AGE: Final = 2 * 365 * 86_400
# Browsers' preload lists ask for at least a year.
PRELOAD_MIN_AGE: Final = 365 * 86_400

# Headers ``extra`` may not set: framing, hop-by-hop, and the ones the gateway owns.
RESERVED: Final = frozenset({
    "connection", "content-length", "content-type", "keep-alive", "proxy-connection", "set-cookie",
    "te", "trailer", "transfer-encoding", "upgrade", "x-request-id", "x-correlation-id",
    "strict-transport-security", "x-content-type-options", "x-frame-options", "referrer-policy",
    "content-security-policy", "content-security-policy-report-only",
})


class Hsts(Strict, frozen=True, kw_only=True):
    max_age: Annotated[int, msgspec.Meta(ge=0, le=MAX_HSTS_AGE)] = 365 * 86_400
    include_subdomains: bool = True
    preload: bool = False

    def __post_init__(self) -> None:
        if self.preload and (not self.include_subdomains or self.max_age < PRELOAD_MIN_AGE):
            raise ValueError("hsts.preload needs include_subdomains: true and max_age of at least a year (31536000)")


class SecurityHeadersConfig(Strict, frozen=True, kw_only=True):
    # Strict-Transport-Security; true: the defaults, false: none.
    hsts: Hsts | bool = True
    # X-Content-Type-Options: nosniff.
    content_type_options: bool = True
    # X-Frame-Options (for browsers without CSP frame-ancestors).
    frame_options: Literal["DENY", "SAMEORIGIN"] | bool = "DENY"
    referrer_policy: ReferrerPolicy | bool = "no-referrer"
    # Content-Security-Policy; the default fits an API: nothing may load, nothing may frame it.
    content_security_policy: HeaderValue | bool = "default-src 'none'; frame-ancestors 'none'"
    # Send the policy as Content-Security-Policy-Report-Only, to try one out.
    csp_report_only: bool = False
    # More headers, by lower-case name (Permissions-Policy, Cross-Origin-Opener-Policy, ...).
    extra: dict[HeaderName, HeaderValue] = {}
    # Replace the upstream's own value of these headers instead of keeping it.
    override: bool = False

    def __post_init__(self) -> None:
        for flag, name in ((self.frame_options, "frame_options"), (self.referrer_policy, "referrer_policy"),
                           (self.content_security_policy, "content_security_policy")):
            if flag is True:
                raise ValueError(f"{name}: give a value, or false to leave the header out")
        for name in self.extra:
            if name in RESERVED:
                raise ValueError(f"extra: '{name}' cannot be set here (it is framing, hop-by-hop, the gateway's "
                                 "own, or one of this plugin's own fields)")
