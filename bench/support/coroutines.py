"""Driving a plugin hook's coroutine without an event loop, for microbenchmarks."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def finish(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that completes without suspending (a hook's fast path):
    the figure is then the hook's own cost, not an event loop's."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended: not a fast path")
