"""Tracing settings from the file and OTEL_* variables, and the traceparent parser."""

from __future__ import annotations

import pytest

from observability.config import TracingConfig
from observability.tracing import TracingSettings, TracingSettingsError, parse_traceparent

TID, SID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_off_without_an_endpoint_on_with_one() -> None:
    assert not TracingSettings(TracingConfig(), {}).enabled
    s = TracingSettings(TracingConfig(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert s.enabled and s.endpoint == "http://collector:4318/v1/traces" and s.protocol == "http/protobuf"


def test_file_wins_over_environment_and_kill_switch_wins_over_all() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env:4318/v1/traces", "OTEL_TRACES_SAMPLER": "traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_SERVICE_NAME": "from-env"}
    s = TracingSettings(TracingConfig(endpoint="http://file:4318", sample_ratio=0.5), env)
    assert (s.endpoint, s.ratio, s.service_name) == ("http://file:4318/v1/traces", 0.5, "from-env")
    assert TracingSettings(TracingConfig(), env).ratio == 0.25
    assert not TracingSettings(TracingConfig(enabled=True), {"OTEL_SDK_DISABLED": "true"}).enabled
    assert not TracingSettings(TracingConfig(), {**env, "OTEL_TRACES_EXPORTER": "none"}).enabled


def test_grpc_endpoint_is_used_as_given() -> None:
    s = TracingSettings(TracingConfig(protocol="grpc", endpoint="http://collector:4317"), {})
    assert s.endpoint == "http://collector:4317"


@pytest.mark.parametrize("env", [{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
                                 {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
                                 {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}])
def test_bad_environment_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(TracingSettingsError):
        TracingSettings(TracingConfig(), env)


def test_parse_traceparent() -> None:
    assert parse_traceparent(f"00-{TID}-{SID}-01".encode()) == (int(TID, 16), int(SID, 16), 1)
    for bad in (f"00-{TID}-{SID}-1", f"ff-{TID}-{SID}-01", f"00-{'0' * 32}-{SID}-01", f"00-{TID}-{'0' * 16}-01",
                f"00-{TID.upper()}-{SID}-01", f"00-{TID}-{SID}-01-extra", "garbage", "\xff" * 60):
        assert parse_traceparent(bad.encode("latin-1")) is None, bad
    # A future version may append fields.
    assert parse_traceparent(f"01-{TID}-{SID}-00-more".encode()) is not None
