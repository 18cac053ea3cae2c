"""Answers of the authorization service, and the per-worker memory of them.

An ``Answer`` is what a call (or Redis) said about one description of a request: its
status (2xx allows, 401 and 403 refuse) and the headers to add to the upstream request,
until ``expires`` (epoch seconds). ``Answers`` keeps them per worker, keyed by the
description's bytes, bounded (oldest first).
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from hotpath.context import Header

now: Final = time.time


class Answer:
    __slots__ = ("expires", "headers", "status")

    def __init__(self, status: int, headers: list[Header], expires: float) -> None:
        self.status = status
        self.headers = headers
        self.expires = expires

    @property
    def allows(self) -> bool:
        return 200 <= self.status < 300


def encode(answer: Answer) -> bytes:
    """The form Redis keeps, shared by every worker."""
    return orjson.dumps({
        "s": answer.status,
        "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in answer.headers],
        "u": answer.expires,
    })


def decode(blob: bytes) -> Answer | None:
    try:
        data: Any = orjson.loads(blob)
        status = int(data["s"])
        headers: list[Header] = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in data["h"]]
        expires = float(data["u"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeEncodeError):
        return None
    return Answer(status, headers, expires)


class Answers:
    """This worker's answers, by description."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[bytes, Answer] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Answer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if now() >= found.expires:
            self._entries.pop(key, None)
            return None
        return found

    def put(self, key: bytes, answer: Answer) -> None:
        if not self._size or now() >= answer.expires:
            return
        entries = self._entries
        if len(entries) >= self._size:
            # Oldest first: dicts keep insertion order, so this is FIFO eviction.
            entries.pop(next(iter(entries)), None)
        entries[key] = answer
