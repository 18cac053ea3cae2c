"""A small demo upstream for ``gatehouse demo``: JSON echo, server-sent events, slow replies."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson


async def lifespan(receive: Any, send: Any) -> None:
    """Acknowledge startup and shutdown; an upstream with nothing to set up."""
    while True:
        msg = await receive()
        await send({"type": msg["type"] + ".complete"})
        if msg["type"] == "lifespan.shutdown":
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path: str = scope["path"]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    if path == "/events":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for i in range(5):
            event = orjson.dumps({"n": i, "at": time.time()})
            await send({"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": True})
            await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    size = 0
    while True:
        msg = await receive()
        size += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    body = orjson.dumps({
        "message": "hello from the demo upstream",
        "method": scope["method"],
        "path": path,
        "query": scope["query_string"].decode("latin-1"),
        "request_id": headers.get("x-request-id"),
        "forwarded_for": headers.get("x-forwarded-for"),
        "user": headers.get("x-user-id"),
        "body_bytes": size,
    })
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    from granian.constants import Interfaces
    from granian.server.mp import MPServer

    MPServer("controlplane.demo_upstream:app", address="127.0.0.1", port=args.port, interface=Interfaces.ASGI,
             workers=1, log_access=False).serve()


if __name__ == "__main__":
    main()
