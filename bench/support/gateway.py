"""In-process gateways built from the harness's scenario configurations.

The same feature sets the load harness measures end to end (bench/harness/scenarios.py)
are built here with ``controlplane.worker.build_app`` and driven through ASGI on the benchmark's
loop, against the in-process upstream (and a real redis-server where features need one).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import yaml

from bench.harness.scenarios import JWT_AUDIENCE, JWT_ISSUER, PATH, Context, Features, gateway_config
from bench.support.asgi import http_scope, request
from bench.support.fixed_upstream import BODY
from bench.support.lifespan import Lifespan
from controlplane.config.loader import load_config_text
from controlplane.worker import GatewayApplication, build_app
from hotpath.context import Header


def bench_token(secret: str, subject: str = "user-1", tier: str = "pro") -> str:
    now = int(time.time())
    claims = {"sub": subject, "tier": tier, "scope": "orders:read", "iss": JWT_ISSUER, "aud": JWT_AUDIENCE,
              "iat": now, "exp": now + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


@contextmanager
def scenario_context(upstream_url: str, redis_url: str | None) -> Iterator[Context]:
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="gh-bench-app-") as tmp:
        yield Context(
            upstream_url=upstream_url,
            otlp_endpoint="http://127.0.0.1:9",  # tracing stays off in-process
            redis_url=redis_url,
            jwt_secret=secret,
            tokens=[bench_token(secret)],
            api_keys=["bench-key-1"],
            access_log_output=str(Path(tmp) / "access.log"),
        )


def credential_headers(features: Features, ctx: Context) -> list[Header]:
    """What a request needs to pass the scenario's auth and API-key rate limit (first caller)."""
    headers: list[Header] = []
    if features.auth:
        headers.append((b"authorization", f"Bearer {ctx.tokens[0]}".encode()))
    if features.rate_limit == "api_key" or features.api_keys:
        headers.append((b"x-api-key", ctx.api_keys[0].encode()))
    return headers


def build(features: Features, ctx: Context) -> GatewayApplication:
    config = gateway_config(features, ctx)
    loaded = load_config_text(yaml.safe_dump(config, sort_keys=False), "<bench>", environ={})
    return build_app(loaded)


@contextmanager
def serving(
    loop: asyncio.AbstractEventLoop, features: Features, ctx: Context, headers: list[Header]
) -> Iterator[tuple[GatewayApplication, dict[str, Any]]]:
    """The scenario's app started on ``loop``, and a GET of the scenario's path carrying
    ``headers`` and the credentials the features need; one such request must come back
    200 with the upstream's body before either is handed over."""
    app = build(features, ctx)
    lifespan = Lifespan(loop, app)
    lifespan.start()
    try:
        scope = http_scope("GET", PATH.encode(), [*headers, *credential_headers(features, ctx)])
        first = loop.run_until_complete(request(app, scope))
        if first.status != 200 or first.body != BODY:
            raise RuntimeError(f"the first request got {first.status}: {first.body[:200]!r}")
        yield app, scope
    finally:
        lifespan.stop()
