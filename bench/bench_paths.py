"""Request-path normalization (hotpath/paths.py): the clean fast path and the slow path."""

from __future__ import annotations

import pytest

from bench.support.fixture_types import Benchmark
from hotpath.paths import normalize

pytestmark = pytest.mark.benchmark(group="paths")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/api/v1/orders/8f14e45f/items", "/api/v1/orders/8f14e45f/items"),
        (b"/api/v1//orders/./8f14e45f/../8f14e45f/%69tems", "/api/v1/orders/8f14e45f/items"),
        (b"/api/v1/files/report%20final%2Epdf", "/api/v1/files/report%20final.pdf"),
    ],
    ids=["clean", "dot-segments", "percent-escapes"],
)
def bench_normalize(benchmark: Benchmark, raw: bytes, expected: str) -> None:
    assert benchmark(normalize, raw) == expected
