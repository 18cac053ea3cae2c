"""Spans reach a real OTLP/HTTP receiver with correct links and traceparent continuity."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory, basic_config
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.processes import Gateway, Upstream

pytestmark = pytest.mark.integration

SERVER, CLIENT = 2, 3  # opentelemetry.proto Span.SpanKind


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.stop()


def _tracing_config(upstream: Upstream, receiver: OtlpReceiver, **tracing: Any) -> dict[str, Any]:
    cfg = basic_config(upstream.url)
    cfg["services"]["backend"]["retry"] = {"attempts": 3, "initial_delay": 0.01, "jitter": 0}
    cfg["observability"] = {
        "access_log": {"enabled": False},
        "tracing": {"endpoint": receiver.endpoint, "export_delay": 0.1, "service_name": "gh-test", **tracing},
    }
    return cfg


@pytest.fixture(scope="module")
def gw(upstream: Upstream, receiver: OtlpReceiver, gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory(_tracing_config(upstream, receiver, sample_ratio=1.0), workers=2)


def _echoed(r: httpx.Response, name: str) -> list[str]:
    return [v for k, v in r.json()["headers"] if k == name]


def test_server_and_upstream_spans_continue_the_callers_trace(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.get(
        f"{gw.url}/api/echo/traced?q=secret",
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01", "tracestate": "vendor=abc"},
        timeout=5,
    )
    assert r.status_code == 200
    sent = _echoed(r, "traceparent")
    assert len(sent) == 1, "the caller's traceparent must be replaced, not duplicated"
    version, tid, parent, flags = sent[0].split("-")
    assert (version, tid, flags) == ("00", trace_id, "01")
    assert _echoed(r, "tracestate") == ["vendor=abc"]

    spans = receiver.wait_for(lambda s: len([x for x in s if x.trace_id == trace_id]) >= 2)
    mine = [s for s in spans if s.trace_id == trace_id]
    server = next(s for s in mine if s.kind == SERVER)
    client = next(s for s in mine if s.kind == CLIENT)
    assert server.parent_span_id == caller_span
    assert client.parent_span_id == server.span_id
    assert parent == client.span_id, "the upstream's parent is the attempt's span"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gatehouse.route"] == "api"
    assert client.attributes["http.response.status_code"] == 200
    assert "secret" not in client.attributes["url.full"]
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns
    assert server.resource["service.name"] == "gh-test"


def test_root_request_starts_a_trace(gw: Gateway, receiver: OtlpReceiver) -> None:
    r = httpx.get(f"{gw.url}/api/echo/root", timeout=5)
    (sent,) = _echoed(r, "traceparent")
    _, tid, parent, flags = sent.split("-")
    assert flags == "01"
    spans = receiver.wait_for(lambda s: len([x for x in s if x.trace_id == tid]) >= 2)
    server = next(s for s in spans if s.trace_id == tid and s.kind == SERVER)
    client = next(s for s in spans if s.trace_id == tid and s.kind == CLIENT)
    assert server.parent_span_id == ""
    assert client.parent_span_id == server.span_id and client.span_id == parent


def test_every_upstream_attempt_gets_a_span(gw: Gateway, receiver: OtlpReceiver) -> None:
    r = httpx.get(f"{gw.url}/api/status/503", timeout=5)
    (sent,) = [v for k, v in r.headers.multi_items() if k == "x-request-id"]
    assert r.status_code == 503
    spans = receiver.wait_for(lambda s: any(x.attributes.get("gatehouse.request_id") == sent for x in s))
    server = next(s for s in spans if s.attributes.get("gatehouse.request_id") == sent)
    clients = sorted((s for s in spans if s.parent_span_id == server.span_id), key=lambda c: c.start_ns)
    assert len(clients) == 3 and all(c.kind == CLIENT for c in clients)
    assert [c.attributes.get("http.request.resend_count") for c in clients] == [None, 1, 2]
    assert all(c.attributes["http.response.status_code"] == 503 and c.status_code == 2 for c in clients)
    assert server.status_code == 2  # STATUS_CODE_ERROR


def test_unsampled_caller_is_passed_through_untouched(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    header = f"00-{trace_id}-{caller_span}-00"
    r = httpx.get(f"{gw.url}/api/echo/unsampled", headers={"traceparent": header}, timeout=5)
    assert _echoed(r, "traceparent") == [header]
    # A later sampled request proves the exporter ran since; none of ours arrived.
    probe = secrets.token_hex(16)
    httpx.get(f"{gw.url}/api/echo/p", headers={"traceparent": f"00-{probe}-{caller_span}-01"}, timeout=5)
    spans = receiver.wait_for(lambda s: any(x.trace_id == probe for x in s))
    assert not [s for s in spans if s.trace_id == trace_id]


def test_ratio_zero_records_nothing_but_still_propagates(
    upstream: Upstream, receiver: OtlpReceiver, gateway_factory: GatewayFactory
) -> None:
    gw0 = gateway_factory(_tracing_config(upstream, receiver, sample_ratio=0.0), workers=2)
    before = len(receiver.spans)
    tids = set()
    for _ in range(10):
        (sent,) = _echoed(httpx.get(f"{gw0.url}/api/echo/z", timeout=5), "traceparent")
        _, tid, _, flags = sent.split("-")
        assert flags == "00"
        tids.add(tid)
    assert len(tids) == 10  # a fresh trace id per request
    # A caller-sampled request is still recorded; once it arrived, earlier spans would have too.
    probe = secrets.token_hex(16)
    httpx.get(f"{gw0.url}/api/echo/p", headers={"traceparent": f"00-{probe}-{secrets.token_hex(8)}-01"}, timeout=5)
    spans = receiver.wait_for(lambda s: any(x.trace_id == probe for x in s[before:]))
    assert not [s for s in spans[before:] if s.trace_id in tids]


def test_tracing_off_injects_nothing(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    cfg = basic_config(upstream.url)
    cfg["observability"] = {"access_log": {"enabled": False}, "tracing": {"enabled": False}}
    gw_off = gateway_factory(cfg, workers=2)
    r = httpx.get(f"{gw_off.url}/api/echo/off", timeout=5)
    assert _echoed(r, "traceparent") == []
