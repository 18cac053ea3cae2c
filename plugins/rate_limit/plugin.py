"""``rate_limit``: exact, tiered rate limits shared by every worker through Redis.

Route config: ``{policy: <name>, cost: <units>}``; global settings ``plugins.rate_limit``
(see ``config`` and docs/rate-limiting.md). Per request: pick the caller's tier, build its
keys, ask the backend for a decision, then add the headers and continue, or answer 429
(or 503 when Redis is unavailable and the policy fails closed).
"""

from __future__ import annotations

from typing import ClassVar, Final

import msgspec

from hotpath.context import Header, RequestContext
from hotpath.errors import CannedError, ErrorCode
from hotpath.plugin import CONTINUE, Plugin, PluginSetup, Verdict
from hotpath.templates import Template, is_template
from plugins.rate_limit.backends.base import LimitBackend
from plugins.rate_limit.config import RateLimitSettings, RouteRateLimit
from plugins.rate_limit.limiter import limiter_for
from plugins.rate_limit.limits import Decision
from plugins.rate_limit.policy import CompiledPolicy, CostPlan, compile_policies

H_LIMIT: Final = b"x-ratelimit-limit"
H_REMAINING: Final = b"x-ratelimit-remaining"
H_RESET: Final = b"x-ratelimit-reset"
H_IETF_POLICY: Final = b"ratelimit-policy"
H_IETF: Final = b"ratelimit"
OUTCOME: Final = "rate_limit"

RATE_LIMITED: Final = CannedError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded")
UNAVAILABLE: Final = CannedError(503, ErrorCode.SERVICE_UNAVAILABLE, "rate limiting is unavailable; retry shortly")


class RateLimitPlugin(Plugin[RouteRateLimit]):
    name: ClassVar[str] = "rate_limit"
    # Below auth (~1450), so the tier and subject are known when the limit is decided.
    priority: ClassVar[int] = 900
    config_type: ClassVar[type[msgspec.Struct]] = RouteRateLimit
    settings_type: ClassVar[type[msgspec.Struct] | None] = RateLimitSettings
    shared_state: ClassVar[bool] = True

    def __init__(self, config: RouteRateLimit, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        settings = setup.settings if isinstance(setup.settings, RateLimitSettings) else RateLimitSettings()
        policy_name = config.policy
        if policy_name not in settings.policies:
            known = ", ".join(sorted(settings.policies)) or "none"
            raise ValueError(f"unknown policy '{policy_name}' (plugins.rate_limit.policies: {known})")
        limiter = limiter_for(setup.runtime, settings)
        self.policy: CompiledPolicy = limiter.policies[policy_name]
        self.backend: LimitBackend = limiter.backend
        self.cost = config.cost
        self.plans: dict[str, CostPlan] = {
            name: CostPlan(policy_name, tier, config.cost, self.policy.fail_open, limiter.counters[(policy_name, name)])
            for name, tier in self.policy.tiers.items()
        }

    @classmethod
    def validate_settings(cls, settings: msgspec.Struct | None) -> None:
        if isinstance(settings, RateLimitSettings):
            compile_policies(settings, "check", 1)  # raises ValueError naming policy and tier

    def check(self) -> None:
        param = self.policy.param
        if self.policy.key == "path_param" and param is not None:
            template = self.route.path
            if not is_template(template) or param not in Template(template).names:
                raise ValueError(f"policy '{self.policy.name}' counts by path parameter '{param}', which the "
                                 f"route's path '{template}' does not have")
        for name, plan in self.plans.items():
            if self.cost > plan.tier.capacity:
                raise ValueError(
                    f"cost {self.cost} exceeds the smallest limit ({plan.tier.capacity}) of tier '{name}' in "
                    f"policy '{self.policy.name}', so no request could ever be admitted"
                )

    async def on_request(self, ctx: RequestContext) -> Verdict:
        policy = self.policy
        plan = self.plans[policy.tier_for(ctx.identity).name]
        keys = policy.request_keys(ctx, plan.tier)
        decision = await self.backend.decide(keys, plan)
        if decision is None:
            plan.counters.fail_closed.inc()
            ctx.report(OUTCOME, "fail_closed")
            # An outage, not the caller's doing: no refusal to audit.
            return UNAVAILABLE.response(ctx.request_id, None, retry_after=1)
        ctx.report(OUTCOME, plan.counters.count(decision.allowed, decision.fallback))
        self._headers(ctx, plan, decision)
        if decision.allowed:
            return CONTINUE
        return RATE_LIMITED.response(ctx.request_id, plan.refusals[decision.index], decision.retry_after)

    def _headers(self, ctx: RequestContext, plan: CostPlan, d: Decision) -> None:
        out: list[Header] = ctx.response_headers
        policy = self.policy
        if policy.legacy_headers:
            out.append((H_LIMIT, str(d.limit).encode()))
            out.append((H_REMAINING, str(max(d.remaining, 0)).encode()))
            out.append((H_RESET, str(d.reset_epoch).encode()))
        if policy.ietf_headers:
            lim = plan.limits[d.index]
            out.append((H_IETF_POLICY, plan.tier.ietf_policy))
            out.append((H_IETF, f'"{lim.name}";r={max(d.remaining, 0)};t={-(-d.reset_ms // 1000)}'.encode()))
