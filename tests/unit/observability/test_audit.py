"""AuditDelivery against a real HTTP sink: batching, bounds, retries, shutdown, JSON log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from hotpath.audit import AuditEvent, AuditType, hash_user, set_user_hash_key
from observability.audit import AuditDelivery, create_audit_sink
from observability.audit_config import AuditConfig
from tests.support.audit_sink import AuditSinkServer


@pytest.fixture
def sink() -> Iterator[AuditSinkServer]:
    srv = AuditSinkServer()
    yield srv
    srv.stop()


def event(i: int, kind: AuditType = AuditType.AUTH_FAILURE) -> AuditEvent:
    return AuditEvent(time=time.time(), type=kind, reason=f"r{i}", request_id=f"req-{i}", route="api",
                      client_ip="127.0.0.1", user=hash_user("alice"))


def count(kind: AuditType, result: str) -> float:
    value = REGISTRY.get_sample_value("gatehouse_audit_events_total", {"type": kind.value, "result": result})
    return value or 0.0


def config(**overrides: Any) -> AuditConfig:
    fields: dict[str, Any] = {"batch_size": 5, "flush_interval": 0.2, "backoff_initial": 0.05, "backoff_max": 0.2,
                              "timeout": 2.0, "shutdown_timeout": 2.0}
    fields.update(overrides)
    return AuditConfig(**fields)


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_events_are_posted_in_batches_with_the_bearer_token(sink: AuditSinkServer) -> None:
    sent_before = count(AuditType.AUTH_FAILURE, "sent")
    audit = AuditDelivery(config(), sink.url, "tok-123")
    await audit.start()
    try:
        for i in range(12):
            audit.emit(event(i))
        await wait_until(lambda: len(sink.events()) == 12)
    finally:
        await audit.stop()
    assert [e["request_id"] for e in sink.events()] == [f"req-{i}" for i in range(12)]
    sizes = [len(b.events) for b in sink.batches]
    assert max(sizes) == 5 and len(sizes) >= 3
    assert {b.authorization for b in sink.batches} == {"Bearer tok-123"}
    first = sink.events()[0]
    assert first["type"] == "auth_failure" and first["reason"] == "r0" and first["client_ip"] == "127.0.0.1"
    assert count(AuditType.AUTH_FAILURE, "sent") - sent_before == 12


async def test_a_partial_batch_goes_out_after_the_flush_interval(sink: AuditSinkServer) -> None:
    audit = AuditDelivery(config(batch_size=100), sink.url, None)
    await audit.start()
    try:
        audit.emit(event(1))
        audit.emit(event(2))
        await wait_until(lambda: len(sink.events()) == 2)
        assert len(sink.batches) == 1
        assert sink.batches[0].authorization is None
    finally:
        await audit.stop()


async def test_queue_is_bounded_and_drops_are_counted(sink: AuditSinkServer) -> None:
    dropped_before = count(AuditType.FORBIDDEN, "dropped")
    audit = AuditDelivery(config(queue_size=10), sink.url, None)  # not started: nothing drains
    for i in range(15):
        audit.emit(event(i, AuditType.FORBIDDEN))
    assert audit.queued == 10
    assert count(AuditType.FORBIDDEN, "dropped") - dropped_before == 5


async def test_retries_with_backoff_until_the_sink_recovers(sink: AuditSinkServer) -> None:
    sink.status = 503
    audit = AuditDelivery(config(max_retries=50), sink.url, None)
    await audit.start()
    try:
        for i in range(3):
            audit.emit(event(i))
        await wait_until(lambda: sink.attempts >= 3)
        assert sink.events() == []
        sink.status = 200
        await wait_until(lambda: len(sink.events()) == 3)
    finally:
        await audit.stop()


async def test_delivery_survives_a_sink_that_is_down(sink: AuditSinkServer) -> None:
    sink.pause()  # connection refused
    audit = AuditDelivery(config(max_retries=100), sink.url, None)
    await audit.start()
    try:
        for i in range(7):
            audit.emit(event(i))
        await asyncio.sleep(0.5)
        sink.resume()
        await wait_until(lambda: len(sink.events()) == 7)
    finally:
        await audit.stop()


async def test_exhausted_retries_count_as_failed(sink: AuditSinkServer) -> None:
    failed_before = count(AuditType.RATE_LIMITED, "failed")
    sink.status = 500
    audit = AuditDelivery(config(max_retries=2), sink.url, None)
    await audit.start()
    try:
        audit.emit(event(1, AuditType.RATE_LIMITED))
        await wait_until(lambda: count(AuditType.RATE_LIMITED, "failed") - failed_before == 1)
        assert sink.attempts == 3
    finally:
        await audit.stop()


async def test_a_refusing_sink_is_not_retried(sink: AuditSinkServer) -> None:
    failed_before = count(AuditType.ADMIN_ACTION, "failed")
    sink.status = 400
    audit = AuditDelivery(config(max_retries=5), sink.url, None)
    await audit.start()
    try:
        audit.emit(event(1, AuditType.ADMIN_ACTION))
        await wait_until(lambda: count(AuditType.ADMIN_ACTION, "failed") - failed_before == 1)
        await asyncio.sleep(0.3)
        assert sink.attempts == 1
    finally:
        await audit.stop()


async def test_emit_never_waits_for_a_slow_sink(sink: AuditSinkServer) -> None:
    sink.delay = 1.0
    audit = AuditDelivery(config(batch_size=1, shutdown_timeout=0.3), sink.url, None)
    await audit.start()
    try:
        for i in range(200):
            audit.emit(event(i))  # synchronous: returns without any I/O
        assert audit.queued >= 190
    finally:
        await audit.stop()


async def test_shutdown_flushes_the_queue(sink: AuditSinkServer) -> None:
    audit = AuditDelivery(config(batch_size=1000, flush_interval=60), sink.url, None)
    await audit.start()
    for i in range(7):
        audit.emit(event(i))
    await asyncio.sleep(0.1)
    assert sink.events() == []
    await audit.stop()
    assert len(sink.events()) == 7


async def test_shutdown_is_bounded_when_the_sink_is_down(sink: AuditSinkServer) -> None:
    sink.pause()
    dropped_before = count(AuditType.BREAKER_OPENED, "dropped")
    failed_before = count(AuditType.BREAKER_OPENED, "failed")
    audit = AuditDelivery(config(batch_size=2, max_retries=100, shutdown_timeout=0.5), sink.url, None)
    await audit.start()
    for i in range(6):
        audit.emit(event(i, AuditType.BREAKER_OPENED))
    started = time.monotonic()
    await audit.stop()
    assert time.monotonic() - started < 5.0  # bounded by shutdown_timeout, not by 100 retries
    lost = (count(AuditType.BREAKER_OPENED, "dropped") - dropped_before
            + count(AuditType.BREAKER_OPENED, "failed") - failed_before)
    assert lost == 6
    audit.emit(event(9, AuditType.BREAKER_OPENED))  # after stop: counted, never raises
    assert count(AuditType.BREAKER_OPENED, "dropped") - dropped_before >= 1


async def test_events_also_go_to_the_json_log(capfd: pytest.CaptureFixture[str]) -> None:
    audit = AuditDelivery(config(log=True, log_output="stderr"), None, None)
    await audit.start()
    audit.emit(event(1))
    await audit.stop()
    err = capfd.readouterr().err
    line = next(ln for ln in err.splitlines() if '"log":"audit"' in ln)
    assert '"request_id":"req-1"' in line and '"type":"auth_failure"' in line


def test_environment_overrides_the_file() -> None:
    cfg = AuditConfig(sink_url="http://file.example/events", sink_token="file-token")
    sink = create_audit_sink(cfg, "k", {"AUDIT_EVENT_SINK_URL": "http://env.example/e",
                                        "AUDIT_EVENT_SINK_TOKEN": "env-token"})
    assert sink is not None and sink.sink_url == "http://env.example/e"
    sink = create_audit_sink(cfg, "k", {})
    assert sink is not None and sink.sink_url == "http://file.example/events"


def test_no_destination_means_no_sink(capfd: pytest.CaptureFixture[str]) -> None:
    assert create_audit_sink(AuditConfig(), "k", {}) is None
    assert create_audit_sink(AuditConfig(enabled=False), "k", {"AUDIT_EVENT_SINK_URL": "http://x/e"}) is None
    assert create_audit_sink(AuditConfig(), "k", {"AUDIT_EVENT_SINK_URL": "ftp://x/e"}) is None
    assert "not an http(s) URL" in capfd.readouterr().err


def test_user_hash_key_is_configurable() -> None:
    try:
        create_audit_sink(AuditConfig(user_hash_key="secret-one"), "fallback", {})
        one = hash_user("alice")
        create_audit_sink(AuditConfig(), "fallback", {})
        fallback = hash_user("alice")
        assert one != fallback and "alice" not in (one or "")
        assert fallback == hash_user("alice", b"fallback")
    finally:
        set_user_hash_key("gatehouse")
