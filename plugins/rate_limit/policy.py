"""Policies compiled once: tier selection, key extraction and per-tier limit plans.

Key layout (one decision = one hash tag = one Cluster slot)::

    <prefix>:v<version>:rl:{<policy>:<caller>}:<limit suffix>

``<caller>`` is a keyed BLAKE2b digest of ``<kind>:<value>`` (``u:`` user, ``k:`` the
subject of a verified API key, ``h:`` header, ``ip:`` address, ``p:`` a path parameter's
value): raw header values and subjects never reach Redis, the key length is bounded, and
no caller-controlled ``{``/``}`` can move the hash tag.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

from hotpath.audit import AuditType, Refusal
from hotpath.bounded import remember
from plugins.rate_limit.config import PolicyConfig, RateLimitSettings
from plugins.rate_limit.limits import CompiledLimit, compile_tier

if TYPE_CHECKING:
    from hotpath.context import Identity, RequestContext
    from plugins.rate_limit.metrics import Counters

KEY_KINDS: Final = ("user", "api_key", "ip", "header", "path_param")
_KIND_PREFIX: Final = {"user": b"u:", "api_key": b"k:", "header": b"h:", "ip": b"ip:", "path_param": b"p:"}
_DIGEST_KEY: Final = b"gatehouse-rate-limit"
# Recent callers' keys per policy, so a repeat caller costs one dict probe rather than a
# keyed BLAKE2b digest and string building (a hotpath.bounded table).
RECENT_CALLERS = 8192


def caller_id(kind: str, value: str | bytes) -> str:
    """The opaque id a caller's counters are stored under."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return hashlib.blake2b(_KIND_PREFIX[kind] + raw, digest_size=12, key=_DIGEST_KEY).hexdigest()


class TierPlan:
    """One tier's limits as a policy uses them, with everything a request needs prepared."""

    __slots__ = ("capacity", "fallback", "ietf_policy", "limits", "name", "params", "suffixes")

    def __init__(self, name: str, limits: tuple[CompiledLimit, ...], workers_for_fallback: int) -> None:
        self.name = name
        self.limits = limits
        self.suffixes = tuple(f":{lim.suffix}" for lim in limits)
        flat: list[int] = [len(limits)]
        for lim in limits:
            flat.extend(lim.params())
        # Script arguments after the cost: number of limits, then (kind, a, b, c) per limit.
        self.params: tuple[int, ...] = tuple(flat)
        self.capacity = min(lim.capacity for lim in limits)
        self.fallback = tuple(lim.split(workers_for_fallback) for lim in limits)
        items = (f'"{lim.name}";q={lim.quota};w={lim.window_s}' for lim in limits)
        self.ietf_policy = ", ".join(items).encode()


class CostPlan:
    """One tier as one route uses it: the tier's limits at the route's cost, with the script
    arguments prepared, the policy's failure mode, the metric children to count in, and
    the reason of a refusal by each limit."""

    __slots__ = ("args", "cost", "counters", "fail_open", "fallback", "limits", "refusals", "tier")

    def __init__(self, policy: str, tier: TierPlan, cost: int, fail_open: bool, counters: Counters) -> None:
        self.tier = tier
        self.cost = cost
        self.limits = tier.limits
        self.fallback = tier.fallback
        self.args: tuple[int, ...] = (cost, *tier.params)
        self.fail_open = fail_open
        self.counters = counters
        self.refusals = tuple(
            Refusal(AuditType.RATE_LIMITED, f"limit '{lim.name}' exceeded",
                    {"policy": policy, "tier": tier.name, "limit": lim.name})
            for lim in tier.limits
        )


class CompiledPolicy:
    __slots__ = (
        "anonymous",
        "default",
        "fail_open",
        "header",
        "ietf_headers",
        "key",
        "legacy_headers",
        "name",
        "param",
        "pattern",
        "recent",
        "tag_prefix",
        "tier_claim",
        "tiers",
    )

    def __init__(self, name: str, cfg: PolicyConfig, key_base: str, workers: int) -> None:
        self.name = name
        self.key = cfg.key
        header = cfg.header
        if cfg.key == "header" and header is None:
            raise ValueError(f"policy '{name}': key 'header' needs 'header' (the request header to key by)")
        if cfg.key != "header" and header is not None:
            raise ValueError(
                f"policy '{name}': 'header' applies to key 'header' only (key 'api_key' counts the subject of "
                "the API key the auth plugin verified, whatever header carried it)"
            )
        self.header = header.encode("ascii") if header else None
        if cfg.key == "path_param" and cfg.param is None:
            raise ValueError(f"policy '{name}': key 'path_param' needs 'param' (the path parameter to key by)")
        self.param = cfg.param
        self.tier_claim = cfg.tier_claim
        self.tiers: dict[str, TierPlan] = {}
        for tier_name, tier in cfg.tiers.items():
            try:
                self.tiers[tier_name] = TierPlan(tier_name, compile_tier(tier), workers)
            except ValueError as exc:
                raise ValueError(f"policy '{name}' tier '{tier_name}': {exc}") from None
        for role, tier_name in (("anonymous_tier", cfg.anonymous_tier), ("default_tier", cfg.default_tier)):
            if tier_name not in self.tiers:
                raise ValueError(f"policy '{name}': {role} '{tier_name}' is not one of its tiers "
                                 f"({', '.join(sorted(self.tiers)) or 'none'})")
        self.anonymous = self.tiers[cfg.anonymous_tier]
        self.default = self.tiers[cfg.default_tier]
        self.fail_open = cfg.fail_open
        self.legacy_headers = cfg.headers.legacy
        self.ietf_headers = cfg.headers.ietf
        self.tag_prefix = f"{key_base}:{{{name}:"
        # SCAN pattern for every key of this policy (policy names carry no glob characters).
        self.pattern = f"{key_base}:{{{name}:*"
        self.recent: dict[tuple[str, str | bytes, str], tuple[str, ...]] = {}

    def tier_for(self, identity: Identity | None) -> TierPlan:
        if identity is None:
            return self.anonymous
        tier: str | None
        if self.tier_claim is None:
            tier = identity.tier
        else:
            claimed = identity.claims.get(self.tier_claim)
            tier = claimed if isinstance(claimed, str) else None
        plan = self.tiers.get(tier) if tier else None
        return plan if plan is not None else self.default

    def caller(self, ctx: RequestContext) -> tuple[str, str | bytes]:
        """Who this request counts against: (kind, value); callers without the policy's
        key go by IP. A path parameter counts every caller of one value together (all
        streams of one job), whoever sends them.

        ``api_key`` is the subject of a verified API key (``Identity.credential``), never
        the string a client sends: a client that invents a key per request is still one
        address. Several keys of one client (rotation) share its counters."""
        kind = self.key
        if kind == "user":
            if ctx.identity is not None:
                return "user", ctx.identity.subject
        elif kind == "path_param":
            params = ctx.path_params
            param = params.get(self.param) if params is not None and self.param is not None else None
            if param:
                return kind, param
        elif kind == "api_key":
            identity = ctx.identity
            if identity is not None and identity.credential == "api_key":
                return "api_key", identity.subject
        elif kind == "header":
            assert self.header is not None
            value = ctx.header(self.header)
            if value:
                return kind, value
        return "ip", ctx.client_ip

    def request_keys(self, ctx: RequestContext, plan: TierPlan) -> tuple[str, ...]:
        """The keys of this request's limits under ``plan`` (shared: never mutate them)."""
        kind, value = self.caller(ctx)
        slot = (kind, value, plan.name)
        recent = self.recent
        keys = recent.get(slot)
        if keys is None:
            keys = remember(recent, slot, tuple(self.keys(caller_id(kind, value), plan)), RECENT_CALLERS)
        return keys

    def keys(self, caller: str, plan: TierPlan) -> list[str]:
        base = f"{self.tag_prefix}{caller}}}"
        return [base + s for s in plan.suffixes]

    def all_suffixes(self) -> list[str]:
        """Every limit suffix any tier of this policy uses (for resetting one caller)."""
        seen: dict[str, None] = {}
        for plan in self.tiers.values():
            for s in plan.suffixes:
                seen[s] = None
        return list(seen)


def compile_policies(settings: RateLimitSettings, key_base: str, workers: int) -> dict[str, CompiledPolicy]:
    workers = workers if settings.fallback.split_across_workers else 1
    return {name: CompiledPolicy(name, cfg, key_base, workers) for name, cfg in settings.policies.items()}
