"""``rate_limit``: exact, tiered rate limits; Lua scripts on Redis, the same algorithms in process.

Modules:

- ``plugin``: the plugin (tier, keys, one backend call, headers or 429);
- ``config``: the typed ``plugins.rate_limit`` settings and per-route config;
- ``limits``: limits compiled to script integers, and ``Decision``;
- ``policy``: tier selection, caller keys, the Redis key layout, and ``CostPlan``;
- ``backends``: where decisions are made, chosen once: ``redis`` (batched script calls,
  with an in-process fallback) or ``memory`` (this process only);
- ``scripts`` and ``lua/``: the algorithms as Redis scripts;
- ``limiter``: the per-worker object tying policies, counters and the backend together;
- ``admin``: usage lookup and resets for the admin API;
- ``metrics``: the decisions counter.

Errors: configuration problems raise ``ValueError`` (turned into a ``ConfigError`` naming
``plugins.rate_limit`` or the route); Redis failures never raise to the request path, a
decision resolves to "unavailable" and the policy's failure mode applies.
"""

from plugins.rate_limit.plugin import RateLimitPlugin

__all__ = ["RateLimitPlugin"]
