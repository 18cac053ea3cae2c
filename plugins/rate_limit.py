"""``rate_limit``: exact, tiered rate limits shared by every worker through Redis.

Route config: ``{policy: <name>, cost: <units>}``; global settings ``plugins.rate_limit``
(see ``hotpath.ratelimit.config`` and docs/rate-limiting.md). The algorithms, batching and
failure handling live in ``hotpath.ratelimit``; this module turns a decision into
headers, a 429 or a 503.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from hotpath.context import Header, RequestContext
from hotpath.errors import CannedError, ErrorCode, GatewayError
from hotpath.plugin import Plugin, PluginSetup
from hotpath.ratelimit.config import RateLimitSettings, RouteRateLimit
from hotpath.ratelimit.limiter import Counters, Limiter
from hotpath.ratelimit.limits import Decision
from hotpath.ratelimit.policy import CompiledPolicy, TierPlan, compile_policies
from hotpath.responses import LocalResponse
from observability.audit_event import AuditType, event_for_request

H_LIMIT: Final = b"x-ratelimit-limit"
H_REMAINING: Final = b"x-ratelimit-remaining"
H_RESET: Final = b"x-ratelimit-reset"
H_IETF_POLICY: Final = b"ratelimit-policy"
H_IETF: Final = b"ratelimit"

RATE_LIMITED: Final = CannedError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded")
UNAVAILABLE: Final = CannedError(503, ErrorCode.SERVICE_UNAVAILABLE, "rate limiting is unavailable; retry shortly")


class _RoutePlan:
    """One tier as this route uses it: the plan plus the script arguments with its cost."""

    __slots__ = ("args", "counters", "plan")

    def __init__(self, plan: TierPlan, cost: int, counters: Counters) -> None:
        self.plan = plan
        self.args: tuple[int, ...] = (cost, *plan.params)
        self.counters = counters


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
        self.limiter = Limiter.for_runtime(setup.runtime, settings)
        self.policy: CompiledPolicy = self.limiter.policies[policy_name]
        self.cost = config.cost
        self.runtime = setup.runtime
        self.plans: dict[str, _RoutePlan] = {
            name: _RoutePlan(plan, config.cost, self.limiter.counters[(policy_name, name)])
            for name, plan in self.policy.tiers.items()
        }

    @classmethod
    def validate_settings(cls, settings: msgspec.Struct | None) -> None:
        if isinstance(settings, RateLimitSettings):
            compile_policies(settings, "check", 1)  # raises ValueError naming policy and tier

    def check(self) -> None:
        for name, rp in self.plans.items():
            if self.cost > rp.plan.capacity:
                raise ValueError(
                    f"cost {self.cost} exceeds the smallest limit ({rp.plan.capacity}) of tier '{name}' in "
                    f"policy '{self.policy.name}', so no request could ever be admitted"
                )

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        policy = self.policy
        rp = self.plans[policy.tier_for(ctx.identity).name]
        plan = rp.plan
        keys = policy.request_keys(ctx, plan)
        limiter = self.limiter
        batcher = limiter.batcher
        counters = rp.counters
        if batcher is None:
            decision = limiter.decide_local(keys, plan.limits, self.cost)
            outcome = counters.decided(decision.allowed)
        else:
            fut = batcher.submit(keys, rp.args)
            result = await fut if fut is not None else None
            if result is not None:
                decision = result
                outcome = counters.decided(decision.allowed)
            elif policy.fail_open:
                decision = limiter.decide_fallback(keys, plan, self.cost)
                outcome = counters.fell_back(decision.allowed)
            else:
                counters.fail_closed.inc()
                ctx.rate_limit_outcome = "fail_closed"
                raise UNAVAILABLE.exception(retry_after=1)
        ctx.rate_limit_outcome = outcome
        self._headers(ctx, plan, decision)
        if not decision.allowed:
            self._refused(ctx, plan, decision)
        return None

    def _headers(self, ctx: RequestContext, plan: TierPlan, d: Decision) -> None:
        out: list[Header] = ctx.response_headers
        policy = self.policy
        if policy.legacy_headers:
            out.append((H_LIMIT, str(d.limit).encode()))
            out.append((H_REMAINING, str(max(d.remaining, 0)).encode()))
            out.append((H_RESET, str(d.reset_epoch).encode()))
        if policy.ietf_headers:
            lim = plan.limits[d.index]
            out.append((H_IETF_POLICY, plan.ietf_policy))
            out.append((H_IETF, f'"{lim.name}";r={max(d.remaining, 0)};t={-(-d.reset_ms // 1000)}'.encode()))

    def _refused(self, ctx: RequestContext, plan: TierPlan, d: Decision) -> None:
        lim = plan.limits[d.index]
        details: dict[str, Any] = {"policy": self.policy.name, "tier": plan.name, "limit": lim.name}
        reason = f"limit '{lim.name}' exceeded"
        self.runtime.audit.emit(event_for_request(AuditType.RATE_LIMITED, ctx, reason, details))
        raise _rate_limited(d.retry_after)


def _rate_limited(retry_after: int) -> GatewayError:
    return RATE_LIMITED.exception(retry_after=retry_after)
