"""The coredis client of a worker: standalone or Cluster, with every timeout set.

coredis serves what the gateway does not send over its own links: Cluster topology and
redirects, pub/sub (breaker state), and the commands of the cache and the admin API.
"""

from __future__ import annotations

from typing import Any

import coredis

from hotpath.redis.config import RedisConfig

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(config: RedisConfig) -> bool:
    if config.mode == "cluster":
        return True
    if config.mode == "standalone":
        return False
    return bool(config.url and config.url.startswith(CLUSTER_SCHEMES))


def make_client(config: RedisConfig) -> Any:
    """A coredis client with every timeout set (coredis defaults to none)."""
    assert config.url is not None
    common: dict[str, Any] = {
        "connect_timeout": config.connect_timeout,
        "stream_timeout": config.command_timeout,
        "max_connections": config.max_connections,
    }
    if is_cluster(config):
        return _cluster_client(config.url, common)
    return coredis.Redis.from_url(config.url, **common)


def _cluster_client(url: str, common: dict[str, Any]) -> Any:
    """``redis+cluster://[user:pass@]host:port[,host:port...]``: the seed nodes.

    Built from explicit TCPLocations: coredis's own ``from_url`` passes dict nodes and
    trips its deprecation warning.
    """
    from urllib.parse import unquote, urlsplit

    from coredis.connection import TCPLocation

    parts = urlsplit(url.replace("+cluster://", "://", 1))
    netloc = parts.netloc.rpartition("@")[2]
    nodes = []
    for seed in netloc.split(","):
        host, _, port = seed.strip().rpartition(":")
        nodes.append(TCPLocation(host.strip("[]") or "127.0.0.1", int(port or 6379)))
    return coredis.RedisCluster(
        startup_nodes=nodes,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
        **common,
    )
