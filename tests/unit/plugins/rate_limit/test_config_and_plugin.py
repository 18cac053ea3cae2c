"""Configuration errors, the shipped defaults, and the plugin in process."""

from __future__ import annotations

import re

import pytest

from controlplane.build import new_runtime
from controlplane.config.errors import ConfigError
from controlplane.config.loader import load_config, load_config_text
from hotpath.audit import AuditEvent, AuditSink
from hotpath.context import Identity, RequestContext
from plugins.rate_limit import RateLimitPlugin
from plugins.rate_limit.limits import BucketLimit, WindowLimit
from tests.support.paths import BAD_CONFIGS
from tests.support.requests import make_ctx

BAD = BAD_CONFIGS / "rate_limit"


@pytest.mark.parametrize(
    ("name", "path", "words"),
    [
        ("unknown_policy.yaml", "routes[0].plugins.rate_limit", "unknown policy 'nope'"),
        ("cost_above_limit.yaml", "routes[0].plugins.rate_limit", "cost 50 exceeds"),
        ("missing_default_tier.yaml", "plugins.rate_limit", "default_tier 'free'"),
        ("burst_without_rate.yaml", "plugins.rate_limit", "'burst' belongs with 'per_second'"),
        # Mapping entries are named by their keys (policy "default", tier "anonymous").
        ("unknown_algorithm.yaml", "plugins.rate_limit.policies.default.tiers.anonymous.limits[0].algorithm",
         "Invalid value 'fixed_window'"),
        ("header_key_without_header.yaml", "plugins.rate_limit", "needs 'header'"),
        ("path_param_without_param.yaml", "plugins.rate_limit", "needs 'param'"),
        ("path_param_not_in_route.yaml", "routes[0].plugins.rate_limit", "path parameter 'job_id'"),
        ("api_key_with_header.yaml", "plugins.rate_limit", "'header' applies to key 'header' only"),
    ],
)
def test_bad_configs_name_file_path_and_field(name: str, path: str, words: str) -> None:
    from controlplane.build import build_gateway

    with pytest.raises(ConfigError) as info:
        loaded = load_config(str(BAD / name), environ={})
        build_gateway(loaded, new_runtime(loaded))
    err = info.value
    assert err.file.endswith(name)
    assert err.path.startswith(path), err
    assert words in str(err)


class Sink(AuditSink):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


def make_plugin(sink: Sink, yaml_text: str) -> RateLimitPlugin:
    from controlplane.build import build_gateway

    loaded = load_config_text(yaml_text, "inline.yaml", environ={})
    runtime = new_runtime(loaded, audit=sink)
    gateway, _ = build_gateway(loaded, runtime)
    # The sink turns the audit plugin on for the route too: it runs first.
    plugin = gateway.table.routes[0].chain.plugins[-1]
    assert isinstance(plugin, RateLimitPlugin)
    return plugin


CONFIG = """
services: {backend: {urls: ["http://127.0.0.1:9"]}}
routes:
  - {name: api, path: /api, service: backend, plugins: {rate_limit: {}}}
"""
IETF = CONFIG + """
plugins:
  rate_limit:
    policies:
      default: {headers: {ietf: true}}
"""


def ctx(identity: Identity | None = None, ip: str = "10.0.0.1") -> RequestContext:
    c = make_ctx("GET", "/api", ip=ip, request_id="req1", started=0.0)
    c.identity = identity
    return c


def test_shipped_tier_table() -> None:
    plugin = make_plugin(Sink(), CONFIG)
    table = {
        name: [(lim.name, lim.capacity, lim.rate if isinstance(lim, BucketLimit) else lim.buckets)
               for lim in plan.limits if isinstance(lim, BucketLimit | WindowLimit)]
        for name, plan in plugin.policy.tiers.items()
    }
    # Token buckets: tokens per period. Windows: 60 one-second sub-windows + 1.
    assert table == {
        "anonymous": [("per_second", 10, 5), ("per_minute", 100, 61)],
        "free": [("per_second", 20, 10), ("per_minute", 200, 61)],
        "pro": [("per_second", 100, 50), ("per_minute", 1000, 61)],
        "enterprise": [("per_second", 400, 200), ("per_minute", 5000, 61)],
    }


async def test_tier_selection_and_headers_in_process() -> None:
    sink = Sink()
    plugin = make_plugin(sink, CONFIG)  # no Redis: the in-process backend decides
    pro = ctx(Identity("alice", "pro"))
    await plugin.on_request(pro)
    headers = dict(pro.response_headers)
    assert headers[b"x-ratelimit-limit"] == b"100" and headers[b"x-ratelimit-remaining"] == b"99"
    assert headers[b"x-ratelimit-reset"].isdigit()
    assert pro.outcome("rate_limit") == "allowed"
    unknown = ctx(Identity("bob", "platinum"))  # not a tier of the policy: default (free)
    await plugin.on_request(unknown)
    assert dict(unknown.response_headers)[b"x-ratelimit-limit"] == b"20"
    # Anonymous callers are keyed by IP: 10 burst, then 429 with the RATE_LIMITED body.
    for _ in range(10):
        await plugin.on_request(ctx(ip="10.9.9.9"))
    refused = ctx(ip="10.9.9.9")
    answer = await plugin.on_request(refused)
    assert answer is not None and answer.status == 429
    assert dict(answer.headers)[b"retry-after"] == b"1"
    assert b'"code":"RATE_LIMITED"' in answer.body and b'"retry_after":1' in answer.body
    assert dict(refused.response_headers)[b"x-ratelimit-remaining"] == b"0"
    assert refused.outcome("rate_limit") == "limited"
    # The refusal says why, for the audit plugin (which emits it after the response).
    assert answer.refusal is not None and answer.refusal.kind.value == "rate_limited"
    assert answer.refusal.details == {"policy": "default", "tier": "anonymous", "limit": "per_second"}
    # Another address has its own counters.
    await plugin.on_request(ctx(ip="10.9.9.8"))


async def test_tier_claim_overrides_identity_tier() -> None:
    text = CONFIG + """
plugins:
  rate_limit:
    policies:
      default: {tier_claim: plan}
"""
    plugin = make_plugin(Sink(), text)
    c = ctx(Identity("carol", "free", claims={"plan": "enterprise"}))
    await plugin.on_request(c)
    assert dict(c.response_headers)[b"x-ratelimit-limit"] == b"400"


def test_request_keys_are_cached_per_caller_and_plan_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.rate_limit import policy as policy_module
    from plugins.rate_limit.policy import caller_id

    policy = make_plugin(Sink(), CONFIG).policy
    free, pro = policy.tiers["free"], policy.tiers["pro"]
    alice = ctx(Identity("alice", "free"))
    keys = policy.request_keys(alice, free)
    assert keys == tuple(policy.keys(caller_id("user", "alice"), free))
    assert policy.request_keys(ctx(Identity("alice", "free")), free) is keys  # a repeat: the cache
    assert policy.request_keys(alice, pro) == tuple(policy.keys(caller_id("user", "alice"), pro))
    # Same value, other kind: an anonymous caller from an address spelled like a subject.
    assert policy.request_keys(ctx(ip="alice"), free) == tuple(policy.keys(caller_id("ip", "alice"), free))
    assert policy.request_keys(ctx(ip="alice"), free) != keys

    monkeypatch.setattr(policy_module, "RECENT_CALLERS", 4)
    for i in range(10):
        c = ctx(ip=f"10.1.0.{i}")
        assert policy.request_keys(c, free) == tuple(policy.keys(caller_id("ip", f"10.1.0.{i}"), free))
        assert len(policy.recent) <= 4


def test_api_key_callers_are_verified_key_subjects_never_the_sent_string() -> None:
    from plugins.rate_limit.policy import caller_id

    text = CONFIG + """
plugins:
  rate_limit:
    policies:
      default: {key: api_key}
"""
    policy = make_plugin(Sink(), text).policy
    free = policy.tiers["free"]
    # Two keys of one client (a rotation) count together, whatever the header said.
    first = ctx(Identity("media-worker", "free", credential="api_key"), ip="10.0.0.1")
    first.headers.append((b"x-api-key", b"key-one"))
    second = ctx(Identity("media-worker", "free", credential="api_key"), ip="10.0.0.2")
    second.headers.append((b"x-api-key", b"key-two"))
    expected = tuple(policy.keys(caller_id("api_key", "media-worker"), free))
    assert policy.request_keys(first, free) == expected
    assert policy.request_keys(second, free) == expected
    # An unverified string (no identity) and a JWT identity go by address: inventing a key
    # per request buys nothing.
    invented = ctx(None, ip="10.0.0.3")
    invented.headers.append((b"x-api-key", b"made-up"))
    assert policy.caller(invented) == ("ip", "10.0.0.3")
    assert policy.caller(ctx(Identity("alice", "free"), ip="10.0.0.4")) == ("ip", "10.0.0.4")


def test_headers_report_a_limit_the_tier_does_not_name() -> None:
    """The headers carry what the decision reports (the fallback reports a worker's share
    of a limit), with remaining clamped at 0 and times rounded up to whole seconds."""
    from plugins.rate_limit.limits import Decision

    plugin = make_plugin(Sink(), IETF)
    plan = plugin.plans["pro"]
    c = ctx(Identity("alice", "pro"))
    plugin._headers(c, plan, Decision(True, 1, 77, -3, 2500, 0, 1_000_000))
    headers = dict(c.response_headers)
    assert headers[b"x-ratelimit-limit"] == b"77"
    assert headers[b"x-ratelimit-remaining"] == b"0"
    assert headers[b"x-ratelimit-reset"] == b"1003"
    assert headers[b"ratelimit"] == b'"per_minute";r=0;t=3'


async def test_ietf_headers_name_the_tightest_limit() -> None:
    plugin = make_plugin(Sink(), IETF)
    c = ctx(Identity("alice", "pro"))
    await plugin.on_request(c)
    headers = dict(c.response_headers)
    assert headers[b"ratelimit-policy"] == b'"per_second";q=100;w=2, "per_minute";q=1000;w=60'
    assert re.fullmatch(rb'"per_second";r=99;t=[1-9]\d*', headers[b"ratelimit"]), headers[b"ratelimit"]
    assert headers[b"x-ratelimit-limit"] == b"100"


PER_JOB = """
services: {backend: {urls: ["http://127.0.0.1:9"]}}
plugins:
  rate_limit:
    policies:
      per_job:
        key: path_param
        param: job_id
        anonymous_tier: jobs
        default_tier: jobs
        tiers: {jobs: {limits: [{algorithm: sliding_window, limit: 3, window: 60}]}}
routes:
  - {name: stream, path: "/jobs/{job_id}/stream", match: exact, service: backend,
     plugins: {rate_limit: {policy: per_job}}}
"""


async def test_a_path_parameter_keys_the_limit_for_every_caller() -> None:
    plugin = make_plugin(Sink(), PER_JOB)

    def job(job_id: str, ip: str, who: str | None) -> RequestContext:
        c = make_ctx("GET", f"/jobs/{job_id}/stream", ip=ip, request_id="r", started=0.0)
        c.path_params = {"job_id": job_id}
        c.identity = Identity(who, "jobs") if who else None
        return c

    # Three callers, three addresses, one job: they share its three slots.
    answers = [await plugin.on_request(job("7", f"10.0.0.{i}", who)) for i, who in enumerate(["a", "b", None, "a"])]
    assert [a.status if a is not None else 200 for a in answers] == [200, 200, 200, 429]
    assert await plugin.on_request(job("8", "10.0.0.1", "a")) is None  # another job counts apart
