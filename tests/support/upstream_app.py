"""A controllable upstream for integration tests (ASGI, run under Granian).

Endpoints:

- ``/echo/...`` any method: JSON with method, path, query, headers, body length and sha256.
- ``/sse?n=5&interval=0.2``: server-sent events, one every ``interval`` seconds.
- ``/bytes?n=N&chunk=65536&length=1``: N bytes streamed in chunks (``length=0``: chunked).
- ``/upload``: reads the body as it streams and reports its size.
- ``/status/<code>``: that status, with ``Retry-After`` if ``?retry_after=`` is given.
- ``/slow?delay=s``: answers after ``delay`` seconds.
- ``/hop``: a response carrying hop-by-hop headers (and one named in ``Connection``).
- ``/raw-header``: a response with non-ASCII header bytes (UTF-8 and latin-1).
- ``/hang``: never answers.
- ``/with-headers?h=name:value&h=...``: 200 carrying each given response header.
- ``/cache/...``: 200 with ``Cache-Control`` from ``?cc=`` and ``Vary`` from ``?vary=``.
- ``/slowcache/...?delay=s``: like ``/cache/`` (``?cc=``), answered after ``delay`` seconds.
- ``/truncated/...``: declares a Content-Length, sends 10 bytes, then fails mid-body.
- ``/_control`` (POST JSON): ``mode`` ok|fail|hang|slow, ``status`` for fail, ``delay`` for
  slow; applies to every other path of this worker until changed.
- ``/record/...``: reads the body as it streams and records what arrived: whether it
  arrived complete, its size and SHA-256, its Content-Type, and the body itself when small.
  ``/_records`` lists the records (``?path=`` prefix filter); ``/_reset`` clears them.
- ``/_stats``: requests seen per path; ``/_reset`` clears stats and mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import orjson

from controlplane.demo_upstream import lifespan

_state: dict[str, Any] = {"mode": "ok", "status": 500, "delay": 1.0}
_seen: Counter[str] = Counter()
_records: list[dict[str, Any]] = []
# Bodies up to this size are kept whole in a record (to compare byte for byte).
RECORD_BODY_LIMIT = 256 * 1024


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        parts.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(parts)


async def _json(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _record(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Record what arrives, complete or not: an aborted upload shows as ``complete: false``."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    record: dict[str, Any] = {"path": scope["path"], "method": scope["method"], "complete": False,
                              "content_type": headers.get("content-type"), "size": 0,
                              "query": scope["query_string"].decode("latin-1")}
    _records.append(record)
    digest = hashlib.sha256()
    kept: list[bytes] = []
    try:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            data = msg.get("body", b"")
            record["size"] += len(data)
            digest.update(data)
            if record["size"] <= RECORD_BODY_LIMIT:
                kept.append(data)
            if not msg.get("more_body"):
                break
    except Exception as exc:  # the connection broke mid-body
        record["error"] = type(exc).__name__
        return
    finally:
        record["sha256"] = digest.hexdigest()
        if record["size"] <= RECORD_BODY_LIMIT:
            record["body"] = b"".join(kept).decode("latin-1")
    record["complete"] = True
    await _json(send, 200, {"received": record["size"], "sha256": record["sha256"]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path: str = scope["path"]
    raw_path: bytes = scope.get("raw_path") or path.encode()
    q = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    if path == "/_control":
        _state.update(orjson.loads(await _body(receive)))
        return await _json(send, 200, _state)
    if path == "/_stats":
        return await _json(send, 200, {"seen": dict(_seen), "total": sum(_seen.values()), "mode": _state["mode"]})
    if path == "/_records":
        prefix = q.get("path", "")
        return await _json(send, 200, [r for r in _records if r["path"].startswith(prefix)])
    if path.startswith("/record/"):
        return await _record(scope, receive, send)
    if path == "/_reset":
        _records.clear()
        _seen.clear()
        _state.update({"mode": "ok", "status": 500, "delay": 1.0})
        return await _json(send, 200, {})
    _seen[path] += 1
    mode = _state["mode"]
    if mode == "fail":
        await _body(receive)
        return await _json(send, int(_state["status"]), {"error": "failing on command"})
    if mode == "hang" or path == "/hang":
        await asyncio.sleep(3600)
    if mode == "slow":
        await asyncio.sleep(float(_state["delay"]))
    if path.startswith("/status/"):
        await _body(receive)
        extra = [(b"retry-after", q["retry_after"].encode())] if "retry_after" in q else []
        return await _json(send, int(path.rsplit("/", 1)[1]), {"status": path}, extra)
    if path == "/hop":
        await _body(receive)
        return await _json(send, 200, {"hop": True}, [
            (b"connection", b"x-upstream-secret"), (b"x-upstream-secret", b"1"), (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b"Basic"), (b"x-kept", b"yes"), (b"x-request-id", b"upstream-chosen")])
    if path == "/with-headers":
        await _body(receive)
        pairs = parse_qs(scope["query_string"].decode("latin-1")).get("h", [])
        given = [(n.strip().lower().encode(), v.strip().encode()) for n, _, v in (p.partition(":") for p in pairs)]
        return await _json(send, 200, {"headers": len(given)}, given)
    if path == "/raw-header":
        await _body(receive)
        return await _json(send, 200, {"raw": True}, [(b"x-name", "José 中".encode()), (b"x-latin", b"caf\xe9")])
    if path == "/slow":
        await asyncio.sleep(float(q.get("delay", "1")))
        return await _json(send, 200, {"slow": True})
    if path == "/sse":
        n, interval = int(q.get("n", "5")), float(q.get("interval", "0.2"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for i in range(n):
            event = orjson.dumps({"n": i, "sent_at": time.time()})
            await send({"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": True})
            if i < n - 1:
                await asyncio.sleep(interval)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/bytes":
        n, chunk = int(q.get("n", "1048576")), int(q.get("chunk", "65536"))
        headers = [(b"content-type", b"application/octet-stream")]
        if q.get("length", "1") == "1":
            headers.append((b"content-length", str(n).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        block = b"x" * chunk
        left = n
        while left > 0:
            part = block if left >= chunk else block[:left]
            left -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": left > 0})
        if n == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/upload":
        size = 0
        digest = hashlib.sha256()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            data = msg.get("body", b"")
            size += len(data)
            digest.update(data)
            if not msg.get("more_body"):
                break
        return await _json(send, 200, {"size": size, "sha256": digest.hexdigest()})
    if path.startswith("/slowcache/"):
        # Cacheable like /cache/, answered after ?delay= seconds (request coalescing tests).
        await _body(receive)
        await asyncio.sleep(float(q.get("delay", "0.5")))
        extra = [(b"cache-control", q["cc"].encode())] if "cc" in q else []
        return await _json(send, 200, {"path": path, "n": _seen[path], "at": time.time()}, extra)
    if path.startswith("/truncated/"):
        # Declares ?length= bytes (default 1000), sends 10 and then fails the response.
        await _body(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", q.get("length", "1000").encode())]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await asyncio.sleep(0.05)
        raise RuntimeError("upstream failed mid-body (on purpose)")
    if path.startswith("/cache/"):
        await _body(receive)
        extra = []
        if "cc" in q:
            extra.append((b"cache-control", q["cc"].encode()))
        if "vary" in q:
            extra.append((b"vary", q["vary"].encode()))
        if "acao" in q:  # the upstream's own CORS policy, which a gateway CORS plugin replaces
            extra.append((b"access-control-allow-origin", q["acao"].encode()))
            extra.append((b"access-control-allow-credentials", b"true"))
        hdrs = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
        return await _json(send, int(q.get("status", "200")),
                           {"path": path, "n": _seen[path], "at": time.time(), "user": hdrs.get("x-user-id"),
                            "lang": hdrs.get("accept-language")}, extra)
    body = await _body(receive)
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    return await _json(send, 200, {
        "method": scope["method"],
        "path": path,
        "raw_path": raw_path.decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": headers,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    })
