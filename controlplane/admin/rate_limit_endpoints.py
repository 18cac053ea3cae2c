"""Admin endpoints of the rate limiter: policies, one caller's usage, resets (``plugins.rate_limit.admin``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blacksheep import Request, Response

from controlplane.admin.app import (
    DELETED,
    OBJECT,
    AdminEndpoint,
    bad_request,
    json_response,
    not_found,
    path_value,
    query_value,
    request_id_of,
    unavailable,
)
from controlplane.admin.openapi import error_doc, ok, path_param

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime


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
        policy, caller = path_value(request, "policy"), path_value(request, "caller")
        try:
            data = await rl.usage(
                limiter(), policy, caller, kind=query_value(request, "kind"), tier=query_value(request, "tier")
            )
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy or tier: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except (OSError, TimeoutError) as exc:
            raise unavailable(exc) from None
        return json_response(200, data, request_id_of(request))

    async def reset_caller(request: Request) -> Response:
        policy, caller = path_value(request, "policy"), path_value(request, "caller")
        try:
            deleted = await rl.reset_caller(limiter(), policy, caller, kind=query_value(request, "kind"))
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except (OSError, TimeoutError) as exc:
            raise unavailable(exc) from None
        return json_response(200, {"deleted": deleted}, request_id_of(request))

    async def reset_policy(request: Request) -> Response:
        try:
            deleted = await rl.reset_policy(limiter(), path_value(request, "policy"))
        except rl.UnknownPolicy as exc:
            raise not_found(f"unknown rate-limit policy: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise unavailable(exc) from None
        return json_response(200, {"deleted": deleted}, request_id_of(request))

    caller_params = [
        path_param("policy", "Rate-limit policy name"),
        path_param("caller", "The caller as requests name it: subject (of a token or an API key), header value or IP"),
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
                            "properties": {"policies": {"type": "array", "items": OBJECT}},
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
                                "limits": {"type": "array", "items": OBJECT},
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
                "responses": {"200": ok(DELETED), "503": error_doc("Redis unavailable")},
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
                "responses": {"200": ok(DELETED), "503": error_doc("Redis unavailable")},
            },
        ),
    ]
