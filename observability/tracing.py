"""OpenTelemetry tracing: one server span per request, one client span per upstream attempt.

Sampling is parent-based with a ratio for root traces, decided here before the SDK is
touched: a request the caller marked unsampled, or a root that loses the draw, costs a
random number and a header string, never an SDK span. Sampled requests
get real SDK spans exported over OTLP (http/protobuf by default, gRPC available) by a
batch processor thread started in each worker after the fork.

``traceparent`` continuity: for a sampled request the client's ``traceparent`` and
``tracestate`` are removed and the upstream gets one naming the attempt's span; for an
unsampled root the upstream gets a fresh trace id flagged unsampled; for an unsampled
caller the caller's headers pass through untouched.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hotpath.telemetry import NO_HEADERS
from observability.config import TracingConfig

if TYPE_CHECKING:
    from hotpath.context import Header, RequestContext

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
_HEX = frozenset("0123456789abcdef")
_LOW64 = (1 << 64) - 1
_FIX_ZERO = (1 << 64) | 1


class TracingSettingsError(ValueError):
    """A tracing setting (from the file or an OTEL_* variable) is not usable."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TracingSettings:
    """The effective tracing settings: the file's fields, then OTEL_*, then defaults."""

    __slots__ = ("enabled", "endpoint", "headers", "protocol", "ratio", "service_name", "source")

    def __init__(self, cfg: TracingConfig, env: Mapping[str, str]) -> None:
        self.source = cfg
        protocol = (
            cfg.protocol
            or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if protocol not in ("http/protobuf", "grpc"):
            raise TracingSettingsError(
                "protocol", f"OTLP protocol '{protocol}' is not supported (http/protobuf, grpc)"
            )
        self.protocol = protocol
        default = "http://localhost:4318" if protocol == "http/protobuf" else "http://localhost:4317"
        endpoint_set = True
        if cfg.endpoint:
            self.endpoint = self._signal_url(cfg.endpoint)
        elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            self.endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            self.endpoint = self._signal_url(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        else:
            endpoint_set = False
            self.endpoint = self._signal_url(default)
        if not self.endpoint.startswith(("http://", "https://")):
            raise TracingSettingsError("endpoint", f"'{self.endpoint}' is not an http(s) URL")
        self.headers: dict[str, str] | None = dict(cfg.headers) or None
        self.service_name = cfg.service_name or env.get("OTEL_SERVICE_NAME") or "gatehouse"
        self.ratio = cfg.sample_ratio if cfg.sample_ratio is not None else _ratio_from_env(env)
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            self.enabled = False
        elif cfg.enabled is not None:
            self.enabled = cfg.enabled
        else:
            self.enabled = endpoint_set and env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"

    def _signal_url(self, base: str) -> str:
        if self.protocol == "grpc":
            return base
        base = base.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _ratio_from_env(env: Mapping[str, str]) -> float:
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            value = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            raise TracingSettingsError("sample_ratio", "OTEL_TRACES_SAMPLER_ARG is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise TracingSettingsError("sample_ratio", "OTEL_TRACES_SAMPLER_ARG must be within [0, 1]")
        return value
    return 1.0


def parse_traceparent(value: bytes) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid version-00 header, else None."""
    if len(value) < 55:
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split("-")
    if len(parts) < 4 or parts[0] == "ff" or len(parts[0]) != 2:
        return None
    version, tid, sid, flags = parts[0], parts[1], parts[2], parts[3]
    if version == "00" and len(parts) != 4:
        return None
    if len(tid) != 32 or len(sid) != 16 or len(flags) != 2:
        return None
    if not _HEX.issuperset(tid) or not _HEX.issuperset(sid) or not _HEX.issuperset(flags + version):
        return None
    trace_id, span_id = int(tid, 16), int(sid, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(flags, 16)


def _traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


class _Unsampled:
    """ctx.span of a request traced but not recorded."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[Header]) -> None:
        self.headers = headers


_PASS_THROUGH = _Unsampled(NO_HEADERS)


class Tracing:
    """Per-worker tracer; inert until ``start`` (in the worker, after the fork)."""

    __slots__ = ("_attrs", "_kinds", "_provider", "_random", "_trace_api", "settings", "tracer")

    def __init__(self, settings: TracingSettings) -> None:
        self.settings = settings
        self.tracer: Any = None
        self._provider: Any = None
        self._random = random.Random()
        self._kinds: Any = None
        self._trace_api: Any = None

    async def start(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        s = self.settings
        cfg = s.source
        self._random.seed()  # fresh draws in every forked worker
        resource = Resource.create(
            {SERVICE_NAME: s.service_name, SERVICE_INSTANCE_ID: f"{socket.gethostname()}-{os.getpid()}"}
        )
        # The ratio is applied here before the SDK is called, so the SDK records what reaches it.
        provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        provider.add_span_processor(
            BatchSpanProcessor(
                self._exporter(),
                max_queue_size=cfg.max_queue_size,
                schedule_delay_millis=cfg.export_delay * 1000.0,
                max_export_batch_size=min(cfg.max_export_batch_size, cfg.max_queue_size),
                export_timeout_millis=cfg.export_timeout * 1000.0,
            )
        )
        self._provider = provider
        self.tracer = provider.get_tracer("gatehouse")
        self._kinds = trace.SpanKind
        self._trace_api = trace

    def _exporter(self) -> Any:
        s = self.settings
        timeout = s.source.export_timeout
        if s.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            insecure = s.endpoint.startswith("http://")
            return GrpcExporter(endpoint=s.endpoint, insecure=insecure, headers=s.headers, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=s.endpoint, headers=s.headers, timeout=timeout)

    async def stop(self) -> None:
        provider, self._provider = self._provider, None
        self.tracer = None
        if provider is not None:
            # Flushes the queue over the network: off the event loop.
            await asyncio.to_thread(provider.shutdown)

    # -- per request -----------------------------------------------------------------

    def start_request(self, ctx: RequestContext) -> None:
        headers = ctx.headers
        parent: tuple[int, int, int] | None = None
        state: bytes | None = None
        for k, v in headers:
            if k == TRACEPARENT:
                parent = parse_traceparent(v)
            elif k == TRACESTATE:
                state = v
        ratio = self.settings.ratio
        if parent is not None:
            sampled = bool(parent[2] & 1)
            if not sampled:
                ctx.trace_id = f"{parent[0]:032x}"
                ctx.span = _PASS_THROUGH
                return
        elif ratio < 1.0 and (ratio <= 0.0 or self._random.random() >= ratio):
            # One draw for the trace id (high 128 bits) and the span id (low 64), formatted
            # once: this is what every unsampled request pays.
            bits = self._random.getrandbits(192)
            if not bits >> 64 or not bits & _LOW64:  # all-zero ids are invalid
                bits |= _FIX_ZERO
            ids = f"{bits:048x}"
            trace_id_hex = ids[:32]
            ctx.trace_id = trace_id_hex
            ctx.span = _Unsampled([(TRACEPARENT, f"00-{trace_id_hex}-{ids[32:]}-00".encode("ascii"))])
            return
        # The SDK span starts when the request did: its wall-clock time, from the monotonic start.
        start_ns = time.time_ns() - int((perf_counter() - ctx.started) * 1e9)
        # Recorded: the caller's trace context is replaced by ours on the way upstream.
        ctx.headers = [h for h in headers if h[0] != TRACEPARENT and h[0] != TRACESTATE]
        trace = self._trace_api
        context = None
        if parent is not None:
            from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

            state_ = TraceState.from_header([state.decode("latin-1")]) if state else None
            remote = SpanContext(
                parent[0], parent[1], is_remote=True, trace_flags=TraceFlags(parent[2]), trace_state=state_
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        else:
            from opentelemetry.context import Context

            context = Context()
        route = ctx.route
        name = f"{ctx.method} {route.path}" if route is not None else ctx.method
        attrs: dict[str, Any] = {
            "http.request.method": ctx.method,
            "url.path": ctx.path,
            "client.address": ctx.client_ip,
            "gatehouse.request_id": ctx.request_id,
        }
        if route is not None:
            attrs["http.route"] = route.path
            attrs["gatehouse.route"] = route.name
        span = self.tracer.start_span(name, context=context, kind=self._kinds.SERVER, attributes=attrs,
                                      start_time=start_ns)
        ctx.span = span
        ctx.trace_id = f"{span.get_span_context().trace_id:032x}"

    def end_request(self, ctx: RequestContext) -> None:
        span = ctx.span
        if span is None or isinstance(span, _Unsampled):
            return
        end_ns = time.time_ns()
        status = ctx.status
        span.set_attribute("http.response.status_code", status)
        outcomes = ctx.outcomes
        if outcomes:
            for name, outcome in outcomes.items():
                span.set_attribute(f"gatehouse.{name}", outcome)
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)

    def start_attempt(self, ctx: RequestContext, attempt: int) -> tuple[Any, list[Header]]:
        parent = ctx.span
        if parent is None:
            return None, NO_HEADERS
        if isinstance(parent, _Unsampled):
            return None, parent.headers
        url = ctx.upstream_url or ""
        parts = urlsplit(url)
        attrs: dict[str, Any] = {
            "http.request.method": ctx.method,
            "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "server.address": parts.hostname or "",
        }
        if parts.port is not None:
            attrs["server.port"] = parts.port
        if attempt:
            attrs["http.request.resend_count"] = attempt
        route = ctx.route
        if route is not None:
            attrs["gatehouse.service"] = route.service
        span = self.tracer.start_span(
            ctx.method, context=self._trace_api.set_span_in_context(parent), kind=self._kinds.CLIENT,
            attributes=attrs,
        )
        sc = span.get_span_context()
        headers = [(TRACEPARENT, _traceparent(sc.trace_id, sc.span_id, bool(sc.trace_flags & 1)).encode("ascii"))]
        if sc.trace_state:
            headers.append((TRACESTATE, sc.trace_state.to_header().encode("latin-1")))
        return span, headers

    def end_attempt(self, span: Any, status: int | None, error: str | None) -> None:
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None or (status is not None and status >= 500):
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error or str(status))
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
