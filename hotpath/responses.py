"""The two response objects of the plugin contract (re-exported by ``hotpath.plugin``).

They live apart from the rest of the contract so that they can be compiled: the proxy
builds a ``ResponseHead`` and reads its ``content-length`` on every response, and a cache
hit or a refusal builds a ``LocalResponse``.
"""

from __future__ import annotations

from hotpath.audit import Refusal
from hotpath.context import Header


class LocalResponse:
    """A complete response the gateway answers itself: a cache hit, a preflight, a refusal.

    A refusal (401, 403, 429, ...) carries a ``Refusal`` saying why, for the audit plugin."""

    __slots__ = ("body", "headers", "refusal", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes = b"", refusal: Refusal | None = None) -> None:
        self.status = status
        # Never mutated by the gateway, so a plugin may hand out one list for many answers.
        self.headers = headers
        self.body = body
        self.refusal = refusal


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
