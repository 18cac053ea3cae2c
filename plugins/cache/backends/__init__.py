"""Shared tiers behind one interface, chosen when the configuration is compiled:
``RedisTier`` (Redis standalone or Cluster) or ``ProcessTier`` (in-process only)."""

from plugins.cache.backends.base import Invalidations, SharedTier
from plugins.cache.backends.memory import ProcessTier
from plugins.cache.backends.redis import RedisTier

__all__ = ["Invalidations", "ProcessTier", "RedisTier", "SharedTier"]
