"""The shared-state backend a worker uses: Redis (standalone or Cluster) or in-process.

Features (rate limiting, breakers, cache) choose their strategy from ``SharedState.kind``
when the configuration is compiled; nothing on the hot path asks which backend is active.

coredis 6 binds a client's connection pool to the task that enters it, so the client is
entered in the ASGI lifespan task (``start``) and left there (``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

import coredis

from hotpath.config.schema import RedisConfig
from hotpath.state.cluster_links import ClusterLinks
from hotpath.state.resp import RespLink, command

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
PING = command(b"PING")


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


class KeySpace:
    """Builds Redis keys: ``<prefix>:v<version>:<feature>:{<tag>}:<rest>``.

    The ``{tag}`` hash tag keeps every key of one decision in one Cluster slot, and the
    version segment lets a deploy that changes a key layout never read an old one.
    """

    __slots__ = ("base",)

    def __init__(self, prefix: str, version: int) -> None:
        self.base = f"{prefix}:v{version}"

    def feature(self, name: str) -> str:
        return f"{self.base}:{name}"


class SharedState:
    __slots__ = ("_exit", "cluster_links", "config", "keys", "kind", "link", "redis")

    def __init__(self, kind: Literal["redis", "memory"], config: RedisConfig) -> None:
        self.kind = kind
        self.config = config
        self.keys = KeySpace(config.key_prefix, config.key_version)
        # Created here (no I/O happens until start()) so features can register scripts
        # while the configuration is compiled.
        self.redis: Any = make_client(config) if kind == "redis" else None
        # The rate limiter's lean links, with the client's own settings: one per node on a
        # Cluster; none for a Unix socket (RespLink.for_client declines it).
        self.link: RespLink | None = None
        self.cluster_links: ClusterLinks | None = None
        if kind == "redis":
            if is_cluster(config):
                self.cluster_links = ClusterLinks(self.redis, connect_timeout=config.connect_timeout)
            else:
                self.link = RespLink.for_client(self.redis, connect_timeout=config.connect_timeout)
        self._exit: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        if self.redis is None:
            return
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.redis)
        self._exit = stack
        # Connect (and, on Cluster, learn the slot map) now, so the first requests do not
        # spend their tight command timeouts on it and fall back needlessly. A Redis that
        # is down does not stop the worker: each feature's failure mode decides.
        up, _, error = await self.ping(self.config.connect_timeout + self.config.command_timeout)
        if not up:
            logging.getLogger("gatehouse").warning("redis unavailable at worker start: %s", error)
        else:
            # The lean links too: their first call would otherwise pay the connect.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.connect_timeout + self.config.command_timeout):
                    if self.link is not None:
                        await self.link.call(PING)
                    if self.cluster_links is not None:
                        await self.cluster_links.warm(PING)

    async def close(self) -> None:
        if self.link is not None:
            self.link.close()
        if self.cluster_links is not None:
            self.cluster_links.close()
        if self._exit is not None:
            stack, self._exit = self._exit, None
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def ping(self, timeout: float) -> tuple[bool, float | None, str | None]:
        """(up, latency ms, error) for health checks; never raises."""
        if self.redis is None:
            return True, None, None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await self.redis.ping()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # ExceptionGroup from coredis included
            return False, None, f"{type(exc).__name__}: {exc}"[:300]
        return True, (time.perf_counter() - started) * 1000.0, None
