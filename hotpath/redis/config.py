"""``redis:``: where shared state lives and how long the gateway waits for it."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hotpath.structs import Strict


class RedisConfig(Strict, frozen=True, kw_only=True):
    url: str | None = None
    # "auto" picks Cluster for redis+cluster:// URLs.
    mode: Literal["auto", "standalone", "cluster"] = "auto"
    connect_timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.5
    # Admission decisions wait at most this long for Redis before the policy's failure
    # mode applies.
    command_timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.1
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    # When true, readiness is false while Redis is unreachable (use with fail_closed
    # policies); when false the gateway serves on through its fail-open fallbacks.
    required: bool = False
    # Prefix of every key the gateway writes; the version segment lets a deploy with a
    # changed key layout never read an old one.
    key_prefix: str = "gh"
    key_version: Annotated[int, msgspec.Meta(ge=1)] = 1
