"""The two response objects of the plugin contract (re-exported by ``hotpath.plugin``).

They live apart from the rest of the contract so that they can be compiled: the proxy
builds a ``ResponseHead`` and reads its ``content-length`` on every response, and a cache
hit or a refusal builds a ``LocalResponse``. As interpreted classes each construction
and lookup was a Python frame. Plugins, compiled or not, create and change them as before.
"""

from __future__ import annotations

from hotpath.context import Header


class LocalResponse:
    """A complete response produced by the gateway (a plugin, a cache hit, an error)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body


class ResponseHead:
    """The upstream response's status and headers, mutable until they are sent."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: list[Header]) -> None:
        self.status = status
        self.headers = headers

    def get(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None
