"""The access log's line as a msgspec struct, encoded straight into the log's buffer.

Why a struct and not a dict: building this struct is one C call with no hashing, where a
20-key dict literal hashes every key, and ``Encoder.encode_into`` writes into the buffer
without an intermediate ``bytes`` (docs/performance.md has the measurement).
The JSON is the same: keys in this order, ``null`` for absent values.

This module stays interpreted (hotpath/native/manifest.py): mypyc-compiled structs lose
the field types msgspec encodes with.
"""

from __future__ import annotations

import msgspec


class AccessLine(msgspec.Struct, gc=False):
    """One request's fields, positional in this order (gc=False: it holds no containers)."""

    ts: str
    level: str
    msg: str
    request_id: str
    correlation_id: str | None
    trace_id: str | None
    user: str | None
    client_ip: str
    method: str
    path: str
    route: str | None
    status: int
    duration_ms: float
    upstream: str | None
    upstream_ms: float | None
    bytes_in: int
    bytes_out: int
    rate_limit: str | None
    breaker: str | None
    cache: str | None


ENCODER = msgspec.json.Encoder()


def as_dict(line: AccessLine) -> dict[str, object]:
    return msgspec.structs.asdict(line)
