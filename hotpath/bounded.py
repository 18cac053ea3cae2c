"""The gateway's memo tables: plain dicts probed inline on the hot path, filled through ``remember``.

Each holds what repeat callers, origins or addresses cost to work out. When one is full it
is emptied rather than evicted entry by entry: a flood of distinct keys then costs what no
table would, memory stays bounded, and a hit stays a single ``dict.get``.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` (emptying ``table`` first when it holds ``limit``) and return it."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value
