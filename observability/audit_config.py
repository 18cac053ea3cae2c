"""The ``audit:`` configuration section (kept apart from the sink so the schema imports
no HTTP client).

The sink URL and token also come from ``AUDIT_EVENT_SINK_URL`` and
``AUDIT_EVENT_SINK_TOKEN``; the environment overrides the file, as it does for the rest
of the configuration.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from hotpath.structs import Strict

URL_RE = re.compile(r"^https?://[^/\s]+")


class AuditConfig(Strict, frozen=True, kw_only=True):
    enabled: bool = True
    # HTTP endpoint receiving POSTed batches: {"events": [...]}.
    sink_url: str | None = None
    # Sent as "Authorization: Bearer <token>".
    sink_token: str | None = None
    # Events per POST; a full batch is sent at once, a partial one after flush_interval.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    flush_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    # Events waiting per worker; beyond it new events are dropped (and counted).
    queue_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000
    # Retries of one batch after a connection error, timeout, 408, 425, 429 or 5xx.
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    # Exponential backoff between retries (with jitter), capped at backoff_max.
    backoff_initial: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.25
    backoff_max: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    # Whole-request timeout of one POST.
    timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0
    # At shutdown, queued events get this long to be delivered.
    shutdown_timeout: Annotated[float, msgspec.Meta(ge=0, le=120)] = 5.0
    # Also write every event as one JSON line (with "log": "audit") to this stream.
    log: bool = False
    log_output: Literal["stdout", "stderr"] = "stdout"
    # Key of the keyed hash that replaces user ids; unset, observability.access_log's
    # user_hash_key is used, so a user hashes alike in access logs and audit events.
    user_hash_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None

    def __post_init__(self) -> None:
        if self.sink_url is not None and self.sink_url and not URL_RE.match(self.sink_url):
            raise ValueError("sink_url must be an http(s) URL")
        if self.backoff_initial > self.backoff_max:
            raise ValueError("backoff_initial must not exceed backoff_max")
