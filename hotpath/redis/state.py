"""The shared-state backend a worker uses: Redis (standalone or Cluster) or in-process.

Features (rate limiting, breakers, cache) choose their strategy from ``SharedState.kind``
when the configuration is compiled; nothing on the hot path asks which backend is active.
With Redis, a worker holds one coredis client and its lean links (``links``): one link to a
standalone Redis, or one per Cluster primary.

coredis 6 binds a client's connection pool to the task that enters it, so the client is
entered in the ASGI lifespan task (``start``) and left there (``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

from hotpath.redis.client import is_cluster, make_client
from hotpath.redis.cluster import ClusterLinks
from hotpath.redis.config import RedisConfig
from hotpath.redis.link import Links, RespLink
from hotpath.redis.resp import command

PING = command(b"PING")


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
    __slots__ = ("_exit", "config", "keys", "kind", "links", "redis")

    def __init__(self, kind: Literal["redis", "memory"], config: RedisConfig) -> None:
        self.kind = kind
        self.config = config
        self.keys = KeySpace(config.key_prefix, config.key_version)
        # Created here (no I/O happens until start()) so features can register scripts
        # while the configuration is compiled.
        self.redis: Any = make_client(config) if kind == "redis" else None
        # Lean links with the client's own settings: one per node on a Cluster. None only
        # without Redis, or for a client the links cannot follow (a credential provider).
        self.links: Links | None = None
        if kind == "redis":
            if is_cluster(config):
                self.links = ClusterLinks(self.redis, connect_timeout=config.connect_timeout)
            else:
                link = RespLink.for_client(self.redis, connect_timeout=config.connect_timeout)
                self.links = Links(link) if link is not None else None
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
                    if self.links is not None:
                        await self.links.warm(PING)

    async def close(self) -> None:
        if self.links is not None:
            self.links.close()
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
