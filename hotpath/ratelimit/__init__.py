"""Exact, tiered rate limiting: Lua scripts on Redis, the same algorithms in process.

Modules:

- ``config``: the typed ``plugins.rate_limit`` settings and per-route config;
- ``limits``: limits compiled to script integers, and ``Decision``;
- ``policy``: tier selection, caller keys and the Redis key layout;
- ``scripts`` and ``lua/``: the algorithms as Redis scripts;
- ``redis_backend``: the per-worker coalescing batcher (one script call per tick);
- ``memory``: the in-process backend (primary without Redis, fail-open fallback);
- ``limiter``: the per-worker object tying them together;
- ``admin``: usage lookup and resets for the admin API.

Errors: configuration problems raise ``ValueError`` (turned into a ``ConfigError`` naming
``plugins.rate_limit`` or the route); Redis failures never raise to the request path, a
decision resolves to "unavailable" and the policy's failure mode applies.
"""
