"""Lean links to the primaries of a Redis Cluster, found through coredis's slot map.

Batched script calls go, one per slot, over ``RespLink``s (one per primary and worker)
instead of through coredis's per-command machinery. coredis stays in charge of the
topology: it discovers the nodes, keeps the slot map fresh, and carries any call this map
sent to the wrong node (a ``MOVED``/``ASK`` reply means the node ran nothing, so the call
is repeated through coredis, which follows the redirect and refreshes its map).

The slot map is read from coredis's ``connection_pool.cluster_layout``, which is not public
API; coredis is pinned below 7. If the attribute is missing, ``for_slot`` knows no link
and every call goes through coredis (``ScriptBatcher.redirected`` counts them).
"""

from __future__ import annotations

from typing import Any

from hotpath.redis.link import Links, RespLink


class ClusterLinks(Links):
    cluster = True

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
        layout = self._layout
        if layout is None:
            return None
        try:
            node = layout.node_for_slot(slot)
        except Exception:  # no map yet (the client has not connected) or the slot is uncovered
            return None
        return self._link(node.host, node.port)

    def all(self) -> list[RespLink]:
        layout = self._layout
        if layout is None:
            return []
        return [self._link(node.host, node.port) for node in layout.primaries]

    def _link(self, host: str, port: int) -> RespLink:
        link = self._links.get((host, port))
        if link is None:
            settings = self._settings
            link = self._links[(host, port)] = RespLink(
                host, port, connect_timeout=self.connect_timeout, username=settings.get("username"),
                password=settings.get("password"), ssl=settings.get("ssl_context"),
            )
        return link

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
