"""The ``observability:`` section of the configuration file.

Tracing fields left unset (``None``) fall back to the standard ``OTEL_*`` variables
(see ``observability.tracing``); a value written in the file wins over the environment,
as OpenTelemetry's own SDKs let code override the variables. ``OTEL_SDK_DISABLED=true``
switches tracing off whatever the file says.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hotpath.structs import Strict

LogLevel = Literal["debug", "info", "warning", "error"]




class MetricsConfig(Strict, frozen=True, kw_only=True):
    # Off: the gateway records no request metrics and /metrics answers 404. Metrics other
    # features record (rate limits, breakers, Redis) are still written.
    enabled: bool = True
    # Seconds between publishes of a worker's request counts into the shared metric files.
    # Requests are counted in process and published in batches (and on every scrape the
    # worker answers, and at shutdown): a scrape may see other workers' counts this late,
    # and a worker killed with SIGKILL loses at most this much of its counts.
    publish_interval: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 0.5


class TracingConfig(Strict, frozen=True, kw_only=True):
    # None: on when an OTLP endpoint is set here or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    # and OTEL_TRACES_EXPORTER is not "none".
    enabled: bool | None = None
    # None: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL, then http/protobuf.
    protocol: Literal["http/protobuf", "grpc"] | None = None
    # Base URL of the collector, like OTEL_EXPORTER_OTLP_ENDPOINT: "/v1/traces" is appended
    # for http/protobuf. None: the OTEL_* variables, then localhost:4318 (4317 for gRPC).
    endpoint: str | None = None
    # Extra export headers (an API key, usually written as ${VAR}); redacted by the admin API.
    headers: dict[str, str] = {}
    # Share of root traces recorded; a request whose caller sent a traceparent follows the
    # caller's decision. None: OTEL_TRACES_SAMPLER(_ARG), then 1.0.
    sample_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    # None: OTEL_SERVICE_NAME, then "gatehouse".
    service_name: str | None = None
    export_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0
    # Seconds between batch exports (OTEL_BSP_SCHEDULE_DELAY).
    export_delay: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # Spans waiting for export per worker; past it new spans are dropped, never blocking.
    max_queue_size: Annotated[int, msgspec.Meta(ge=16, le=1_000_000)] = 4096
    max_export_batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 512


class AccessLogConfig(Strict, frozen=True, kw_only=True):
    enabled: bool = True
    format: Literal["json", "text"] = "json"
    # Lines under this level are not written: 1xx-3xx are info, 4xx warning, 5xx error
    # ("warning" keeps only failed requests).
    level: LogLevel = "info"
    # "stdout", "stderr" or a file path (opened for append).
    output: str = "stdout"
    # Lines gather until this many bytes wait (0: each line at once). A pipe (containers)
    # then gets them as back-to-back writes of whole lines within PIPE_BUF (4096 bytes),
    # which are atomic, so lines from several workers never interleave. A regular file gets
    # each batch in one write (file writes land whole), and batches of at least 64 KiB, but
    # at most half of max_queued_bytes.
    buffer_bytes: Annotated[int, msgspec.Meta(ge=0, le=1_048_576)] = 32_768
    # Longest time a line waits in the buffer.
    flush_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    # Bytes of lines waiting for the writer thread (per worker). A slow or blocked output
    # (a stalled pipe reader) never blocks requests: past this, lines are dropped and
    # counted in gatehouse_access_log_dropped_lines_total.
    max_queued_bytes: Annotated[int, msgspec.Meta(ge=4096, le=268_435_456)] = 4_194_304
    # Key of the keyed hash that replaces user ids in logs and audit events; set it to a
    # secret (${VAR}) so ids cannot be recovered by hashing guesses.
    user_hash_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "gatehouse"


class LoggingConfig(Strict, frozen=True, kw_only=True):
    """The gateway's own diagnostic log (logger "gatehouse"), not the access log."""

    level: LogLevel = "info"
    format: Literal["json", "text"] = "json"


class ObservabilityConfig(Strict, frozen=True, kw_only=True):
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    access_log: AccessLogConfig = AccessLogConfig()
    logging: LoggingConfig = LoggingConfig()
