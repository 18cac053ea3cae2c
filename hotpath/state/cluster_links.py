"""Lean links to the primaries of a Redis Cluster, found through coredis's slot map.

The rate-limit batcher sends one script call per slot. On a Cluster those calls go, like on
a standalone Redis, over ``RespLink``s (one per primary and worker) instead of through
coredis's per-command machinery. coredis stays in charge of the topology: it discovers the
nodes, keeps the slot map fresh, and carries any call this map sends to the wrong node
(a ``MOVED``/``ASK`` reply means the node ran nothing, so the call is repeated through
coredis, which follows the redirect and refreshes its map).

The slot map is read from coredis's ``connection_pool.cluster_layout``, which is not public
API; coredis is pinned below 7. If the attribute is missing, every call goes through
coredis, as before this module existed, and the Cluster tests show which path ran
(``RedisBatcher.link_calls``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hotpath.state.resp import RespLink


class ClusterLinks:
    __slots__ = ("_layout", "_links", "_settings", "connect_timeout")

    def __init__(self, client: Any, *, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        pool = getattr(client, "connection_pool", None)
        # Credentials and the TLS context (certificate checks included) are the client's own.
        settings = getattr(pool, "connection_kwargs", None)
        self._settings: dict[str, Any] = settings if isinstance(settings, dict) else {}
        # The pool builds its layout when the client is built; it fills in on connect. No
        # layout (another coredis), or a credential provider the link cannot use: no links.
        layout = getattr(pool, "cluster_layout", None)
        self._layout: Any = None if self._settings.get("credential_provider") is not None else layout
        self._links: dict[tuple[str, int], RespLink] = {}

    def for_slot(self, slot: int) -> RespLink | None:
        """The link to the primary that serves ``slot``; None when the map does not know."""
        layout = self._layout
        if layout is None:
            return None
        try:
            node = layout.node_for_slot(slot)
        except Exception:  # no map yet (the client has not connected) or the slot is uncovered
            return None
        return self._link(node.host, node.port)

    def _link(self, host: str, port: int) -> RespLink:
        link = self._links.get((host, port))
        if link is None:
            settings = self._settings
            link = self._links[(host, port)] = RespLink(
                host, port, connect_timeout=self.connect_timeout, username=settings.get("username"),
                password=settings.get("password"), ssl=settings.get("ssl_context"),
            )
        return link

    async def warm(self, ping: bytes) -> None:
        """Connect to every known primary now, so first requests do not pay the handshakes."""
        layout = self._layout
        if layout is None:
            return
        links = [self._link(node.host, node.port) for node in layout.primaries]
        await asyncio.gather(*(link.call(ping) for link in links), return_exceptions=True)

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
