"""Admin endpoints over the features: rate limits, circuit breakers, the response cache.

Each calls the operations its feature exposes for the admin API (``plugins.rate_limit.admin``,
``controlplane.breakers``, ``plugins.cache.invalidation``); this module only maps
them to HTTP. Redis being unreachable during an operation answers 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from blacksheep import Request, Response

from controlplane.admin.app import (
    AdminEndpoint,
    AdminError,
    bad_request,
    json_response,
    not_found,
    read_json,
    request_id_of,
)
from controlplane.admin.openapi import error_doc, ok, path_param
from hotpath.errors import ErrorCode

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime

_OBJ: dict[str, Any] = {"type": "object"}
_DELETED = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}}


def _unavailable(exc: BaseException) -> AdminError:
    return AdminError(503, ErrorCode.SERVICE_UNAVAILABLE, f"shared state unavailable: {type(exc).__name__}")


def _param(request: Request, name: str) -> str:
    value = request.route_values.get(name)
    if not value:
        raise bad_request(f"missing path parameter {name}")
    return str(value)


def _query(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None


def ratelimit_endpoints(runtime: WorkerRuntime) -> list[AdminEndpoint]:
    from plugins.rate_limit import admin as rl
    from plugins.rate_limit.limiter import limiter_of

    def limiter() -> Any:
        found = limiter_of(runtime)
        if found is None:
            raise not_found("no route uses rate limiting")
        return found

    async def policies(request: Request) -> Response:
        lim = limiter_of(runtime)
        names = sorted(lim.policies) if lim is not None else []
        out = [{"name": n, "tiers": sorted(lim.policies[n].tiers)} for n in names] if lim is not None else []
        return json_response(200, {"policies": out}, request_id_of(request))

    async def usage(request: Request) -> Response:
        policy, caller = _param(request, "policy"), _param(request, "caller")
        try:
            data = await rl.usage(limiter(), policy, caller, kind=_query(request, "kind"), tier=_query(request, "tier"))
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy or tier: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except (OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return json_response(200, data, request_id_of(request))

    async def reset_caller(request: Request) -> Response:
        policy, caller = _param(request, "policy"), _param(request, "caller")
        try:
            deleted = await rl.reset_caller(limiter(), policy, caller, kind=_query(request, "kind"))
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except (OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return json_response(200, {"deleted": deleted}, request_id_of(request))

    async def reset_policy(request: Request) -> Response:
        try:
            deleted = await rl.reset_policy(limiter(), _param(request, "policy"))
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return json_response(200, {"deleted": deleted}, request_id_of(request))

    caller_params = [
        path_param("policy", "Rate-limit policy name"),
        path_param("caller", "The caller as requests name it: subject, API key, header value or IP"),
        {
            "name": "kind",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Kind of key (default: the policy's own)",
        },
    ]
    return [
        AdminEndpoint(
            "GET",
            "/ratelimits",
            "ratelimits.list",
            policies,
            {
                "summary": "Configured rate-limit policies and their tiers",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["policies"],
                            "properties": {"policies": {"type": "array", "items": _OBJ}},
                        }
                    )
                },
            },
        ),
        AdminEndpoint(
            "GET",
            "/ratelimits/{policy}/callers/{caller}",
            "ratelimits.usage",
            usage,
            {
                "summary": "One caller's current usage of every limit of a tier",
                "parameters": [
                    *caller_params,
                    {"name": "tier", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["policy", "tier", "limits"],
                            "properties": {
                                "policy": {"type": "string"},
                                "tier": {"type": "string"},
                                "limits": {"type": "array", "items": _OBJ},
                            },
                        }
                    ),
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
        AdminEndpoint(
            "DELETE",
            "/ratelimits/{policy}/callers/{caller}",
            "ratelimits.reset_caller",
            reset_caller,
            {
                "summary": "Forget one caller's usage under every tier of the policy",
                "parameters": caller_params,
                "responses": {"200": ok(_DELETED), "503": error_doc("Redis unavailable")},
            },
        ),
        AdminEndpoint(
            "DELETE",
            "/ratelimits/{policy}",
            "ratelimits.reset_policy",
            reset_policy,
            {
                "summary": "Forget every caller's usage under the policy",
                "parameters": [path_param("policy", "Rate-limit policy name")],
                "responses": {"200": ok(_DELETED), "503": error_doc("Redis unavailable")},
            },
        ),
    ]


def breaker_endpoints(runtime: WorkerRuntime) -> list[AdminEndpoint]:
    from controlplane.breakers import breaker_registry

    registry = breaker_registry(runtime)

    async def list_breakers(request: Request) -> Response:
        return json_response(200, {"breakers": registry.snapshot()}, request_id_of(request))

    async def reset_one(request: Request) -> Response:
        name = _param(request, "service")
        try:
            found = await registry.reset(name)
        except (OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        if not found:
            raise not_found(f"service '{name}' has no circuit breaker")
        breaker = registry.get(name)
        return json_response(200, breaker.describe() if breaker else {}, request_id_of(request))

    async def reset_all(request: Request) -> Response:
        try:
            count = await registry.reset_all()
        except (OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None
        return json_response(200, {"reset": count}, request_id_of(request))

    breaker = {
        "type": "object",
        "required": ["service", "state"],
        "properties": {"service": {"type": "string"}, "state": {"type": "string"}},
    }
    return [
        AdminEndpoint(
            "GET",
            "/breakers",
            "breakers.list",
            list_breakers,
            {
                "summary": "Every circuit breaker with its state",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["breakers"],
                            "properties": {"breakers": {"type": "array", "items": breaker}},
                        }
                    )
                },
            },
        ),
        AdminEndpoint(
            "POST",
            "/breakers/reset",
            "breakers.reset_all",
            reset_all,
            {
                "summary": "Close every breaker",
                "responses": {
                    "200": ok({"type": "object", "required": ["reset"], "properties": {"reset": {"type": "integer"}}}),
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
        AdminEndpoint(
            "POST",
            "/breakers/{service}/reset",
            "breakers.reset",
            reset_one,
            {
                "summary": "Close one service's breaker",
                "parameters": [path_param("service", "Service name")],
                "responses": {"200": ok(breaker), "503": error_doc("Redis unavailable")},
            },
        ),
    ]


def cache_endpoints(runtime: WorkerRuntime) -> list[AdminEndpoint]:
    from plugins.cache.invalidation import CacheNotConfigured, Invalidated, invalidate

    async def stats(request: Request) -> Response:
        from observability.multiproc import MetricsExposition

        runtime.telemetry.publish_metrics()  # this worker's counts current; others' within an interval
        routes: dict[str, dict[str, float]] = {}
        for name, labels, value in MetricsExposition().samples(("gatehouse_cache_requests", "gatehouse_cache_stores")):
            route = labels.get("route", "")
            entry = routes.setdefault(route, {"hit": 0.0, "miss": 0.0, "bypass": 0.0, "coalesced": 0.0, "stores": 0.0})
            if name.startswith("gatehouse_cache_stores"):
                entry["stores"] += value
            else:
                entry[labels.get("result", "other")] = entry.get(labels.get("result", "other"), 0.0) + value
        out = []
        for route, counts in sorted(routes.items()):
            lookups = counts["hit"] + counts["miss"]
            out.append(
                {
                    "route": route,
                    **{k: int(v) for k, v in counts.items()},
                    "hit_ratio": round(counts["hit"] / lookups, 4) if lookups else None,
                }
            )
        return json_response(200, {"routes": out}, request_id_of(request))

    async def invalidate_endpoint(request: Request) -> Response:
        body = await read_json(request)
        route = body.get("route")
        prefix = body.get("prefix", "/")
        if (route is not None and not isinstance(route, str)) or not isinstance(prefix, str):
            raise bad_request("route and prefix must be strings")
        try:
            result = await invalidate(runtime, route=route, prefix=prefix)
        except CacheNotConfigured as exc:
            raise not_found(str(exc)) from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except Invalidated as exc:
            raise AdminError(503, ErrorCode.SERVICE_UNAVAILABLE, str(exc)) from None
        return json_response(200, msgspec.to_builtins(result), request_id_of(request))

    route_stats = {
        "type": "object",
        "required": ["route", "hit", "miss", "hit_ratio"],
        "properties": {
            "route": {"type": "string"},
            "hit": {"type": "integer"},
            "miss": {"type": "integer"},
            "hit_ratio": {"type": ["number", "null"]},
        },
    }
    return [
        AdminEndpoint(
            "GET",
            "/cache/stats",
            "cache.stats",
            stats,
            {
                "summary": "Cache lookups by result and stores per route, summed over every worker",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["routes"],
                            "properties": {"routes": {"type": "array", "items": route_stats}},
                        }
                    )
                },
            },
        ),
        AdminEndpoint(
            "POST",
            "/cache/invalidate",
            "cache.invalidate",
            invalidate_endpoint,
            {
                "summary": "Invalidate cached responses of a route (or all routes) under a path prefix",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "route": {"type": ["string", "null"]},
                                    "prefix": {"type": "string", "pattern": "^/"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": ok({"type": "object", "required": ["prefix", "local_entries_dropped", "shared"]}),
                    "404": error_doc("No route caches, or the named route does not"),
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
    ]
