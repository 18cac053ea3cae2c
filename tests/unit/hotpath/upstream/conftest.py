"""Client tests run on both event loops: uvloop is what the gateway runs, asyncio the reference."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Set up before each test's loop, so run after it closed: a transport some test left
    open is collected, and reported, in the test that left it."""
    yield
    gc.collect()
