"""Admin endpoints of the response cache: statistics and invalidation (``plugins.cache.invalidation``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from controlplane.admin.openapi import error_doc, ok
from hotpath.errors import ErrorCode

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime


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
