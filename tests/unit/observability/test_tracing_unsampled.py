"""Unsampled roots: a fresh, valid trace context for the upstream, without the SDK."""

from __future__ import annotations

import random

from hotpath.context import RequestContext
from observability.config import TracingConfig
from observability.tracing import Tracing, TracingSettings, parse_traceparent
from tests.support.requests import make_ctx


def _tracing(ratio: float) -> Tracing:
    return Tracing(TracingSettings(TracingConfig(enabled=True, sample_ratio=ratio, endpoint="http://127.0.0.1:9"), {}))


def _ctx() -> RequestContext:
    return make_ctx("GET", "/x", started=0.0)


def test_an_unsampled_root_gets_a_fresh_valid_traceparent() -> None:
    tracing = _tracing(0.0)
    seen = set()
    for _ in range(50):
        ctx = _ctx()
        tracing.start_request(ctx)
        span, headers = tracing.start_attempt(ctx, 0)
        assert span is None
        [(name, value)] = headers
        parsed = parse_traceparent(value)
        assert name == b"traceparent" and parsed is not None
        trace_id, _, flags = parsed
        assert flags == 0 and ctx.trace_id == f"{trace_id:032x}"
        seen.add(ctx.trace_id)
        tracing.end_request(ctx)  # nothing recorded, nothing to end
    assert len(seen) == 50


class _ZeroRandom(random.Random):
    def getrandbits(self, k: int, /) -> int:
        return 0


def test_all_zero_ids_are_never_sent() -> None:
    tracing = _tracing(0.0)
    tracing._random = _ZeroRandom()
    ctx = _ctx()
    tracing.start_request(ctx)
    _, [(_, value)] = tracing.start_attempt(ctx, 0)
    assert parse_traceparent(value) == (1, 1, 0)
