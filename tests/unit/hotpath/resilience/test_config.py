"""Breaker and retry configuration: the documented examples load; bad ones are located."""

from __future__ import annotations

import pytest

from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config, load_config_text
from hotpath.resilience.config import BreakerConfig, RetryConfig
from hotpath.resilience.policy import BreakerPolicy
from tests.support.paths import BAD_CONFIGS

BAD = BAD_CONFIGS / "resilience"

# file -> (path, text in the message)
CASES = {
    "breaker_never_opens.yaml": ("services.orders.breaker", "never opens"),
    "breaker_cannot_close.yaml": ("services.orders.breaker", "could never close"),
    "breaker_unknown_key.yaml": ("services.orders.breaker.open_for", "unknown key"),
    "breaker_rate_out_of_bounds.yaml": ("services.orders.breaker.failure_rate", "<= 100"),
    "retry_bad_delays.yaml": ("services.orders.retry", "exceeds max_delay"),
    "retry_bad_budget.yaml": ("services.orders.retry.budget.ratio", ">= 0"),
    "retry_bad_method.yaml": ("services.orders.retry", "'post'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_resilience_config_is_located(name: str) -> None:
    path, text = CASES[name]
    with pytest.raises(ConfigError) as info:
        load_config(str(BAD / name), environ={})
    assert info.value.file == str(BAD / name)
    assert info.value.path == path
    assert text in info.value.message


DOC_EXAMPLES = """
services:
  search:           # opens after 20 requests at a 50% error rate, 3 s timeout
    urls: ["http://127.0.0.1:9"]
    timeouts: {connect: 1, read: 3, total: 3}
    breaker: {minimum_calls: 20, failure_rate: 50, slow_call_duration: 3}
  profile:          # 10 requests, 40%, 2 s
    urls: ["http://127.0.0.1:9"]
    timeouts: {connect: 1, read: 2, total: 2}
    breaker: {minimum_calls: 10, failure_rate: 40, slow_call_duration: 2}
  payments:         # 5 consecutive failures, open 60 s, 2 successes to close
    urls: ["http://127.0.0.1:9"]
    breaker: {failure_rate: null, consecutive_failures: 5, open_duration: 60, successes_to_close: 2}
    retry: {attempts: 3, initial_delay: 0.1, max_delay: 1, on_429: true, budget: {ratio: 0.2}}
routes:
  - {name: search, path: /search, service: search}
"""


def test_documented_examples_load() -> None:
    loaded = load_config_text(DOC_EXAMPLES, "inline.yaml", environ={})
    search = loaded.services["search"].breaker
    assert isinstance(search, BreakerConfig)
    assert (search.minimum_calls, search.failure_rate, search.slow_call_duration) == (20, 50, 3)
    payments = loaded.services["payments"]
    assert payments.breaker is not None and payments.breaker.probes == 2
    assert isinstance(payments.retry, RetryConfig) and payments.retry.on_429
    policy = BreakerPolicy(payments.breaker, default_probe_timeout=61)
    assert policy.rate_bp == 0 and policy.consecutive == 5 and policy.open_duration == 60
    assert policy.lease == 61  # no probe_timeout: the service's total timeout plus grace
    assert loaded.services["search"].retry is None


def test_policy_encodes_script_arguments_once() -> None:
    config = BreakerConfig(failure_rate=40.5, minimum_calls=10, window=2, open_duration=1.5, probe_timeout=0.75)
    policy = BreakerPolicy(config, default_probe_timeout=9)
    assert policy.lua_args == (4050, 10, 200, 10, 0, 1500, 1, 1, 750, 3600_000)
