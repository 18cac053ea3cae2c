"""Drive an ASGI app in-process: one request, collected response."""

from __future__ import annotations

from typing import Any

from hotpath.context import Header


class Collected:
    """What the app sent: status, headers and the joined body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[Header] = []
        self.body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


_REQUEST_DONE: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _REQUEST_DONE


def http_scope(method: str, raw_path: bytes, headers: list[Header], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 51234),
        "server": ("127.0.0.1", 8080),
    }


async def request(app: Any, scope: dict[str, Any]) -> Collected:
    """One request through ``app``; a fresh scope copy each time, as a server would make."""
    out = Collected()
    await app(dict(scope), _receive, out.send)
    return out
