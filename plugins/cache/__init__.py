"""Response caching: a per-worker tier kept coherent by Redis, with Redis as the shared tier.

See docs/cache.md. ``invalidate`` is what the admin API calls.
"""

from plugins.cache.invalidation import CacheNotConfigured, InvalidationResult, invalidate
from plugins.cache.plugin import CachePlugin

__all__ = ["CacheNotConfigured", "CachePlugin", "InvalidationResult", "invalidate"]
