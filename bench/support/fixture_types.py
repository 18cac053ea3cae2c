"""A typed view of pytest-benchmark's ``benchmark`` fixture (the library is untyped)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Benchmark(Protocol):
    group: str | None
    extra_info: dict[str, Any]

    def __call__(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...

    def pedantic(
        self,
        target: Callable[..., R],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> R: ...
