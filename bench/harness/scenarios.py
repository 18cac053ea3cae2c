"""What the harness measures: reference rows (nginx) and gateway scenarios.

A gateway scenario is a configuration (one route ``/api`` to one service on the nginx
upstream) plus the features it needs. Before it runs, the harness checks that each
feature has landed (its plugin is registered, its config section is typed) and that the
generated configuration compiles exactly as ``gatehouse check`` would; after the gateway
starts, probes confirm each feature is really active (a 401 without a token, rate-limit
headers, an ``X-Cache: HIT``, a non-disabled breaker, request metrics, access-log lines).
A scenario that fails any of these is reported "not available" with the reason, never
measured without its feature.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import yaml

ROUTE = "bench"
SERVICE = "bench"
PATH = "/api/orders/8f14e45f"
JWT_ISSUER = "https://idp.bench.gatehouse.invalid/"
JWT_AUDIENCE = "gatehouse-bench"
# Limits far above what one machine can offer, so every decision is computed (and
# admitted) at full cost: the benchmark measures the limiter, not 429s.
HUGE_TIER = {"per_second": 1_000_000, "per_minute": 60_000_000, "burst": 1_000_000}
API_KEY_HEADER = "x-api-key"
# The nginx upstream answers 200 here and counts the calls (services.NginxUpstream).
AUTHZ_PATH = "/authz"
# Signed URLs of a run stay valid for its whole length.
SIGNED_TTL = 6 * 3600


@dataclass
class Context:
    """What scenarios build on, prepared once per harness run."""

    upstream_url: str
    otlp_endpoint: str
    redis_url: str | None
    jwt_secret: str
    tokens: list[str]
    api_keys: list[str]
    # Where access-log lines go: the gateway's stdout (a file under the harness) or a path.
    access_log_output: str = "stdout"
    # The HMAC key of the signed-url scenario.
    url_key: str = "bench-url-signing-key-0123456789abcdef"


class Unavailable(Exception):
    """The scenario cannot run faithfully; the message says why."""


# ---------------------------------------------------------------------------------------
# Landing checks: is the feature in this tree at all?


def _registry_has(name: str) -> str | None:
    from controlplane.config.registry import PluginRegistry

    try:
        registry = PluginRegistry.default()
    except Exception as exc:
        return f"the plugin registry failed to load: {exc}"
    return None if registry.get(name) is not None else f"plugin '{name}' is not registered (not landed)"


def _typed_field(struct: type[msgspec.Struct], name: str, where: str) -> str | None:
    for f in msgspec.structs.fields(struct):
        if f.name == name:
            if "dict[" in str(f.type).lower():
                return f"{where} is still an untyped mapping (feature not landed)"
            return None
    return f"{where} does not exist"


def _breaker_landed() -> str | None:
    from hotpath.upstream.config import ServiceConfig

    return _typed_field(ServiceConfig, "breaker", "services.<name>.breaker")


def _observability_landed() -> str | None:
    from controlplane.config.schema import GatewayConfig

    return _typed_field(GatewayConfig, "observability", "the observability section")


def _api_keys_landed() -> str | None:
    problem = _registry_has("auth")
    if problem:
        return problem
    from plugins.auth.config import AuthSettings

    if "key_sets" not in {f.name for f in msgspec.structs.fields(AuthSettings)}:
        return "plugins.auth.key_sets does not exist (API keys not landed)"
    return None


LANDING_CHECKS: dict[str, Callable[[], str | None]] = {
    "validate": lambda: _registry_has("validate"),
    "api_keys": _api_keys_landed,
    "forward_auth": lambda: _registry_has("forward_auth"),
    "signed_url": lambda: _registry_has("signed_url"),
    "security_headers": lambda: _registry_has("security_headers"),
    "auth": lambda: _registry_has("auth"),
    "rate_limit": lambda: _registry_has("rate_limit"),
    "cache": lambda: _registry_has("cache"),
    "breaker": _breaker_landed,
    "observability": _observability_landed,
}


# ---------------------------------------------------------------------------------------
# Runtime probes: is the feature active in the gateway that was started?


class Probe:
    """Sends a few requests to a started gateway and raises ``Unavailable`` if a feature
    it claims is not visibly at work."""

    def __init__(self, base_url: str, headers: dict[str, str], path: str = PATH,
                 authz_calls: Callable[[], int] | None = None) -> None:
        self.base = base_url
        self.headers = headers
        # What the scenario requests (a signed URL carries its signature in the query).
        self.path = path
        self.authz_calls = authz_calls

    def get(self, path: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        target = self.path if path is None else path
        return httpx.get(self.base + target, headers=self.headers if headers is None else headers, timeout=5)

    def ok(self) -> httpx.Response:
        r = self.get()
        if r.status_code != 200:
            raise Unavailable(f"a normal request got {r.status_code}: {r.text[:200]}")
        return r


def probe_auth(p: Probe) -> None:
    r = p.get(headers={})
    if r.status_code != 401:
        raise Unavailable(f"auth not active: a request without a token got {r.status_code}, not 401")
    p.ok()


def probe_rate_limit(p: Probe) -> None:
    r = p.ok()
    if "x-ratelimit-limit" not in r.headers and "ratelimit" not in r.headers:
        raise Unavailable("rate limiting not active: no rate-limit headers on a limited route")


def probe_cache(p: Probe) -> None:
    p.ok()
    r = p.ok()
    if r.headers.get("x-cache", "").upper() != "HIT":
        raise Unavailable(f"cache not active: the second GET had X-Cache {r.headers.get('x-cache')!r}, not HIT")


def probe_breaker(p: Probe) -> None:
    p.ok()
    r = httpx.get(p.base + "/health", timeout=5)
    state = r.json().get("breakers", {}).get(SERVICE)
    if state in (None, "disabled"):
        raise Unavailable(f"breaker not active: /health reports {state!r} for service {SERVICE!r}")


def probe_validate(p: Probe) -> None:
    """The scenario's body passes; the same body made invalid is refused without the upstream."""
    from bench.support.search_body import BODY, BODY_BYTES

    headers = {**p.headers, "content-type": "application/json"}
    r = httpx.post(p.base + PATH, content=BODY_BYTES, headers=headers, timeout=5)
    if r.status_code != 200:
        raise Unavailable(f"a valid body got {r.status_code}: {r.text[:200]}")
    bad = httpx.post(p.base + PATH, json={**BODY, "limit": 500}, headers=headers, timeout=5)
    if bad.status_code != 400 or "/limit" not in bad.text:
        raise Unavailable(f"validation not active: an invalid body got {bad.status_code}, not 400 naming /limit")
def probe_forward_auth(p: Probe) -> None:
    if p.authz_calls is None:
        raise Unavailable("forward auth cannot be probed: nothing counts the authorization endpoint's answers")
    before = p.authz_calls()
    # A path no request asked about yet, so no worker holds an answer for it.
    r = p.get(f"{PATH}/probe-{uuid.uuid4().hex}")
    if r.status_code != 200:
        raise Unavailable(f"a request got {r.status_code}: {r.text[:200]}")
    deadline = time.monotonic() + 3
    while p.authz_calls() <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    if p.authz_calls() <= before:
        raise Unavailable("forward auth not active: a first request caused no call to the authorization endpoint")


def probe_signed_url(p: Probe) -> None:
    r = p.get(PATH)
    if r.status_code != 403:
        raise Unavailable(f"signed URLs not active: an unsigned request got {r.status_code}, not 403")
    p.ok()


def probe_security_headers(p: Probe) -> None:
    r = p.ok()
    if r.headers.get("x-content-type-options") != "nosniff" or "content-security-policy" not in r.headers:
        raise Unavailable("security headers not active: a proxied response lacks them")


def probe_metrics(p: Probe) -> None:
    p.ok()
    r = httpx.get(p.base + "/metrics", timeout=5)
    if r.status_code != 200 or f'route="{ROUTE}"' not in r.text:
        raise Unavailable(f"request metrics not active: /metrics answered {r.status_code} without route {ROUTE!r}")


def probe_metrics_off(p: Probe) -> None:
    p.ok()
    r = httpx.get(p.base + "/metrics", timeout=5)
    if r.status_code == 200 and f'route="{ROUTE}"' in r.text:
        raise Unavailable("metrics were configured off but /metrics still counts the route")


def access_log_lines(output: str) -> int:
    """JSON access-log lines in the gateway's output (one per request)."""
    n = 0
    for line in output.splitlines():
        if line.startswith("{") and '"request_id"' in line and '"status"' in line:
            n += 1
    return n


def wait_for_access_log(read_output: Callable[[], str], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if access_log_lines(read_output()) > 0:
            return
        time.sleep(0.2)
    raise Unavailable("access log not active: no JSON access-log line in the gateway's output")


# ---------------------------------------------------------------------------------------
# Configurations


def _observability(*, metrics: bool, access_log: bool, tracing: float | None, ctx: Context) -> dict[str, Any]:
    tracing_cfg: dict[str, Any] = {"enabled": False}
    if tracing is not None:
        tracing_cfg = {
            "enabled": True,
            "protocol": "http/protobuf",
            "endpoint": ctx.otlp_endpoint,
            "sample_ratio": tracing,
            "service_name": "gatehouse-bench",
        }
    log_cfg: dict[str, Any] = {"enabled": access_log}
    if access_log:
        log_cfg |= {"format": "json", "output": ctx.access_log_output}
    return {"metrics": {"enabled": metrics}, "access_log": log_cfg, "tracing": tracing_cfg}


@dataclass(frozen=True)
class Features:
    auth: bool = False
    rate_limit: str | None = None  # "user" (with auth) or "api_key"
    breaker: bool = False
    cache: bool = False
    metrics: bool = False
    access_log: bool = False
    tracing: float | None = None
    validate: bool = False  # a JSON Schema check of the body (plugins/validate)
    # API-key auth: the users' keys, each with its own subject, as hashes in the config.
    api_keys: bool = False
    # Forward auth to an endpoint of the upstream, answers kept for an hour (so cached).
    forward_auth: bool = False
    signed_url: bool = False
    security_headers: bool = False

    def needs_redis(self) -> bool:
        return bool(self.rate_limit or self.breaker or self.cache)

    def landing(self) -> list[str]:
        needed = ["observability"]
        needed.extend(n for n in ("api_keys", "forward_auth", "signed_url", "security_headers") if getattr(self, n))
        if self.auth:
            needed.append("auth")
        if self.rate_limit:
            needed.append("rate_limit")
        if self.breaker:
            needed.append("breaker")
        if self.cache:
            needed.append("cache")
        if self.validate:
            needed.append("validate")
        return needed


def gateway_config(features: Features, ctx: Context) -> dict[str, Any]:
    route_plugins: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    service: dict[str, Any] = {
        "urls": [ctx.upstream_url],
        "timeouts": {"connect": 1, "read": 10, "total": 15},
        "pool": {"max_idle_per_host": 256},
    }
    if features.auth:
        plugins["auth"] = {
            "providers": {
                "bench": {
                    "algorithms": ["HS256"],
                    "secret": ctx.jwt_secret,
                    "issuer": JWT_ISSUER,
                    "audience": JWT_AUDIENCE,
                }
            }
        }
        route_plugins["auth"] = {"mode": "required", "provider": "bench"}
    if features.rate_limit == "user":
        plugins["rate_limit"] = {
            "policies": {"bench": {"key": "user", "tiers": dict.fromkeys(("anonymous", "free", "pro"), HUGE_TIER)}}
        }
        route_plugins["rate_limit"] = {"policy": "bench"}
    elif features.rate_limit == "api_key":
        # Counted by the header's value: the limiter's cost alone, without verifying keys
        # (the api-key scenario measures verification; its policy key is then ``api_key``).
        plugins["rate_limit"] = {
            "policies": {
                "bench": {
                    "key": "header",
                    "header": "x-api-key",
                    "tiers": dict.fromkeys(("anonymous", "free", "pro"), HUGE_TIER),
                }
            }
        }
        route_plugins["rate_limit"] = {"policy": "bench"}
    if features.api_keys:
        from plugins.auth.api_key_config import digest_text

        keys = [{"id": f"key-{i}", "hash": digest_text(key.encode()), "subject": f"client-{i}", "tier": "pro"}
                for i, key in enumerate(ctx.api_keys)]
        auth = plugins.setdefault("auth", {})
        auth["key_sets"] = {"bench": {"header": API_KEY_HEADER, "keys": keys}}
        route_plugins["auth"] = {"credentials": ["api_key"], "key_set": "bench"}
    if features.forward_auth:
        route_plugins["forward_auth"] = {"url": ctx.upstream_url + AUTHZ_PATH, "cache_ttl": 3600, "timeout": 2}
    if features.signed_url:
        plugins["signed_url"] = {"keys": [{"id": "bench", "secret": ctx.url_key}], "max_ttl": SIGNED_TTL}
        route_plugins["signed_url"] = {}
    if features.security_headers:
        route_plugins["security_headers"] = {}
    if features.cache:
        route_plugins["cache"] = {"ttl": 3600, "shared": True}
    if features.validate:
        from bench.support.search_body import SCHEMA

        route_plugins["validate"] = {"content_types": ["application/json"], "body": SCHEMA}
    if features.breaker:
        service["breaker"] = {}  # the defaults: 50% failures over a 10 s window, 20 calls minimum
    route: dict[str, Any] = {"name": ROUTE, "path": "/api", "service": SERVICE, "plugins": route_plugins}
    config: dict[str, Any] = {
        "services": {SERVICE: service},
        "routes": [route],
        "observability": _observability(
            metrics=features.metrics, access_log=features.access_log, tracing=features.tracing, ctx=ctx
        ),
        # The admin listener binds a fixed port; a benchmark never needs it.
        "admin": {"enabled": False},
    }
    if plugins:
        config["plugins"] = plugins
    if features.needs_redis():
        if ctx.redis_url is None:
            raise Unavailable("needs Redis, which is not running")
        # On this saturated 2-core box a worker's loop or Redis stalls for ~100 ms now and
        # then; with the 0.1 s default such a stall sends decisions down the fail-open path
        # for retry_interval, and the run is refused (run.py checks). The harness measures
        # decisions made in Redis, so it gives them 1 s; production sets this timeout from
        # its latency budget.
        config["redis"] = {"url": ctx.redis_url, "command_timeout": 1.0}
    return config


def request_path(features: Features, ctx: Context) -> str:
    """What the scenario's requests ask for: PATH, signed when the route verifies URLs."""
    if not features.signed_url:
        return PATH
    from plugins.signed_url.signer import UrlSigner

    signer = UrlSigner({"bench": ctx.url_key.encode()}, "bench", leeway=30, max_ttl=SIGNED_TTL)
    url, _ = signer.sign("GET", PATH, ttl=SIGNED_TTL)
    return url


def check_compiles(config: dict[str, Any], workers: int) -> None:
    """The same validation ``gatehouse run`` does before it forks, in this process."""
    from controlplane.build import build_gateway, new_runtime
    from controlplane.cli import check_state_backend
    from controlplane.config.errors import ConfigError
    from controlplane.config.loader import load_config_text

    try:
        loaded = load_config_text(yaml.safe_dump(config, sort_keys=False), "<bench scenario>", environ={})
        check_state_backend(loaded, workers)
        build_gateway(loaded, new_runtime(loaded))
    except ConfigError as exc:
        raise Unavailable(f"configuration rejected: {exc}") from None
    except Exception as exc:  # a plugin that half-landed: report, don't crash the run
        raise Unavailable(f"configuration failed to build: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------
# The scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    measures: str
    kind: str = "gateway"  # "nginx-direct", "nginx-proxy", "gateway"
    features: Features = field(default_factory=Features)
    # Scenario whose throughput this one is also compared with (its cost on top of it).
    against: str | None = None
    # Send tokens (auth) or API keys (api-key rate limit) with every request.
    credentials: str | None = None
    # POST this JSON text with every request (instead of a GET).
    body: str | None = None

    def probes(self) -> list[Callable[[Probe], None]]:
        f = self.features
        found: list[Callable[[Probe], None]] = []
        if self.kind != "gateway":
            return found
        if f.auth or f.api_keys:
            found.append(probe_auth)
        if f.forward_auth:
            found.append(probe_forward_auth)
        if f.signed_url:
            found.append(probe_signed_url)
        if f.security_headers:
            found.append(probe_security_headers)
        if f.rate_limit:
            found.append(probe_rate_limit)
        if f.breaker:
            found.append(probe_breaker)
        if f.cache:
            found.append(probe_cache)
        if f.validate:
            found.append(probe_validate)
        found.append(probe_metrics if f.metrics else probe_metrics_off)
        return found


FULL = Features(auth=True, rate_limit="user", breaker=True, metrics=True, access_log=True)
VALIDATED = Features(auth=True, rate_limit="user", breaker=True, metrics=True, access_log=True, validate=True)


def _search_body() -> str:
    from bench.support.search_body import BODY_BYTES

    return BODY_BYTES.decode("ascii")


SEARCH_BODY = _search_body()

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("nginx-direct", "nginx upstream, direct", "the load generator against the upstream alone",
             kind="nginx-direct"),
    Scenario("nginx-proxy", "nginx reverse proxy", "the reference: nginx proxying to the upstream with "
             "keep-alive; every ratio is against this row", kind="nginx-proxy"),
    Scenario("bare", "gateway, bare proxy", "routing, header hygiene, request ids and the pooled "
             "upstream call; no plugins, metrics, logs or tracing", against="nginx-proxy"),
    Scenario("metrics", "bare + metrics", "the cost of request metrics (counted per worker, published to "
             "multiprocess Prometheus, served at /metrics)",
             features=Features(metrics=True), against="bare"),
    Scenario("metrics-tracing", "bare + metrics + 1% tracing", "metrics plus OpenTelemetry at 1% "
             "parent-based sampling, exported over OTLP/HTTP", features=Features(metrics=True, tracing=0.01),
             against="bare"),
    Scenario("limiter", "bare + Redis rate limit", "one tiered Redis rate-limit decision per request "
             "(API keys of 1000 callers), coalesced per event-loop tick",
             features=Features(rate_limit="api_key"), against="bare", credentials="api_key"),
    Scenario("breaker", "bare + shared breaker", "the Redis-shared circuit breaker's per-request cost",
             features=Features(breaker=True), against="bare"),
    Scenario("full", "full chain", "JWT (HS256, 1000 users) + tiered Redis rate limits + shared breaker + "
             "metrics + JSON access logs + proxy", features=FULL, against="bare", credentials="token"),
    Scenario("full-tracing", "full chain + 1% tracing", "the full chain with OpenTelemetry at 1% sampling",
             features=Features(auth=True, rate_limit="user", breaker=True, metrics=True, access_log=True,
                               tracing=0.01), against="full", credentials="token"),
    Scenario("full-body", "full chain, 1 KB JSON body", "the full chain POSTing the validate scenario's "
             "~1 KB JSON body, unchecked: what the body alone costs", features=FULL, against="full",
             credentials="token", body=SEARCH_BODY),
    Scenario("validate", "full chain + JSON Schema", "the full chain POSTing a ~1 KB JSON body that the "
             "validate plugin reads, parses (refusing duplicate keys) and checks against a draft 2020-12 "
             "schema before forwarding it", features=VALIDATED, against="full", credentials="token",
             body=SEARCH_BODY),
    Scenario("cache-hit", "cache hit", "a GET answered from the gateway's cache (per-worker tier kept "
             "coherent through Redis)", features=Features(cache=True), against="nginx-proxy"),
    Scenario("api-key", "bare + API-key auth", "verifying an API key (1000 clients, hashes in the config): a "
             "SHA-256, a dict lookup, the identity headers", features=Features(api_keys=True), against="bare",
             credentials="api_key"),
    Scenario("forward-auth", "API-key auth + forward auth, cached", "an external authorization check whose "
             "answer this worker already holds (one per client, kept an hour)",
             features=Features(api_keys=True, forward_auth=True), against="api-key", credentials="api_key"),
    Scenario("signed-url", "bare + signed URL", "verifying an HMAC-SHA256 URL signature and removing it from "
             "the query", features=Features(signed_url=True), against="bare"),
    Scenario("security-headers", "bare + security headers", "adding five security response headers and the "
             "check for the upstream's own", features=Features(security_headers=True), against="bare"),
)

BY_NAME = {s.name: s for s in SCENARIOS}
CLIENTS_SCENARIO = "clients"
ALL_NAMES = (*BY_NAME, CLIENTS_SCENARIO)


def landing_problems(scenario: Scenario) -> list[str]:
    problems = []
    for feature in scenario.features.landing():
        reason = LANDING_CHECKS[feature]()
        if reason:
            problems.append(reason)
    return problems
