"""Typed configuration of the rate limiter: global settings and per-route config.

``plugins.rate_limit`` (global) names policies; a route picks one with
``routes[].plugins.rate_limit: {policy: <name>, cost: <n>}``. Everything here is
validated and compiled once (see ``plugins.rate_limit.limits`` and ``.policy``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hotpath.structs import Strict

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
# Sliding windows span seconds to hours (a day at most); token-bucket periods likewise.
WindowSeconds = Annotated[float, msgspec.Meta(ge=0.01, le=86_400)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
TierName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9!#$%&'*+.^_`|~\-]{1,128}$")]




class SlidingWindow(Strict, tag="sliding_window", tag_field="algorithm", frozen=True, kw_only=True):
    """At most ``limit`` units in any ``window`` seconds.

    Usage is counted in ``precision`` sub-windows; a unit stops counting when its whole
    sub-window has left the window, so the limit is never exceeded over any span of
    ``window`` seconds (it may free up to one sub-window late). Default precision: the
    largest divisor of the window (in microseconds) not above 60.
    """

    name: Name | None = None
    limit: PositiveInt
    window: WindowSeconds
    precision: Annotated[int, msgspec.Meta(ge=1, le=3600)] | None = None


class TokenBucket(Strict, tag="token_bucket", tag_field="algorithm", frozen=True, kw_only=True):
    """``rate`` tokens refill every ``period`` seconds, up to ``burst`` (default: rate).

    The refill is exact in integer arithmetic, so rates below 1/s (``rate: 1,
    period: 10``) hold exactly.
    """

    name: Name | None = None
    rate: PositiveInt
    period: WindowSeconds = 1.0
    burst: PositiveInt | None = None


LimitConfig = SlidingWindow | TokenBucket


class TierConfig(Strict, frozen=True, kw_only=True):
    """One tier's limits. The shorthand keys compile to:

    - ``per_second`` (+ ``burst``): a token bucket refilling ``per_second`` per second,
      holding ``burst`` tokens (default ``per_second``);
    - ``per_minute`` / ``per_hour``: sliding windows of 60 s / 3600 s;
    - ``limits``: any further limits spelled out.
    """

    per_second: PositiveInt | None = None
    per_minute: PositiveInt | None = None
    per_hour: PositiveInt | None = None
    burst: PositiveInt | None = None
    limits: tuple[LimitConfig, ...] = ()


def default_tiers() -> dict[str, TierConfig]:
    """The shipped table (issue 3)."""
    return {
        "anonymous": TierConfig(per_second=5, per_minute=100, burst=10),
        "free": TierConfig(per_second=10, per_minute=200, burst=20),
        "pro": TierConfig(per_second=50, per_minute=1000, burst=100),
        "enterprise": TierConfig(per_second=200, per_minute=5000, burst=400),
    }


class HeadersConfig(Strict, frozen=True, kw_only=True):
    # X-RateLimit-Limit / -Remaining / -Reset (epoch seconds) for the tightest limit.
    legacy: bool = True
    # RateLimit-Policy / RateLimit from draft-ietf-httpapi-ratelimit-headers.
    ietf: bool = False


class PolicyConfig(Strict, frozen=True, kw_only=True):
    # What one limit counter belongs to. ``user`` is the authenticated subject, ``api_key``
    # the subject of a verified API key (the auth plugin's key sets), ``path_param`` a path
    # parameter's value; callers without the chosen key (anonymous, no header) are keyed by
    # client IP instead.
    key: Literal["user", "api_key", "ip", "header", "path_param"] = "user"
    # Request header whose value is the key for ``header``.
    header: HeaderName | None = None
    # For ``path_param``: the route template's parameter to count by (``job_id`` of
    # ``/jobs/{job_id}/stream``); every route using the policy must have it.
    param: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] | None = None
    # Claim naming the tier; None uses the tier the auth plugin resolved (Identity.tier).
    tier_claim: str | None = None
    anonymous_tier: TierName = "anonymous"
    # Tier of an authenticated caller whose tier is missing or not in ``tiers``.
    default_tier: TierName = "free"
    tiers: dict[TierName, TierConfig] = msgspec.field(default_factory=default_tiers)
    # When Redis is unavailable: true admits through the in-process fallback limiter
    # (same algorithms), false answers 503 SERVICE_UNAVAILABLE.
    fail_open: bool = True
    headers: HeadersConfig = HeadersConfig()


class BatchConfig(Strict, frozen=True, kw_only=True):
    # Decisions carried by one script call at most.
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 256
    # Script calls a worker keeps in flight; decisions arriving meanwhile are coalesced
    # into the next call. 1 coalesces the most.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # When a decision reaches an idle batcher, wait up to this long for others before
    # sending (decisions arriving while a call is in flight already coalesce). At moderate
    # load it turns one call per request into one per few requests.
    linger: Annotated[float, msgspec.Meta(ge=0, le=0.05)] = 0.002
    # ...but send at the end of the loop tick in which this many decisions wait: the linger
    # then costs only as long as min_batch requests take to arrive, and never holds back a
    # loaded worker.
    min_batch: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 8
    # Longest a request waits for its decision (None: redis.command_timeout).
    timeout: Annotated[float, msgspec.Meta(gt=0, le=10)] | None = None
    # After a failed call, decisions skip Redis for this long (no request pays a timeout
    # while Redis is down); the next call after it is the probe.
    retry_interval: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5


class FallbackConfig(Strict, frozen=True, kw_only=True):
    # Divide each limit by the worker count in the fallback, so N workers together stay
    # near the configured limit instead of N times it.
    split_across_workers: bool = True
    # Keys the in-process limiter keeps at most (least recently used go first).
    max_keys: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000


def default_policies() -> dict[str, PolicyConfig]:
    return {"default": PolicyConfig()}


class RateLimitSettings(Strict, frozen=True, kw_only=True):
    policies: dict[Name, PolicyConfig] = msgspec.field(default_factory=default_policies)
    batch: BatchConfig = BatchConfig()
    fallback: FallbackConfig = FallbackConfig()


class RouteRateLimit(Strict, frozen=True, kw_only=True):
    policy: Name = "default"
    # Units one request consumes from every limit of its tier.
    cost: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
