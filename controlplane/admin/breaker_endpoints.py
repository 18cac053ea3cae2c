"""Admin endpoints of the circuit breakers: state, and resets of one or all (``controlplane.breakers``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blacksheep import Request, Response

from controlplane.admin.app import (
    AdminEndpoint,
    json_response,
    not_found,
    path_value,
    request_id_of,
    unavailable,
)
from controlplane.admin.openapi import error_doc, ok, path_param

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime


def breaker_endpoints(runtime: WorkerRuntime) -> list[AdminEndpoint]:
    from controlplane.breakers import breaker_registry

    registry = breaker_registry(runtime)

    async def list_breakers(request: Request) -> Response:
        return json_response(200, {"breakers": registry.snapshot()}, request_id_of(request))

    async def reset_one(request: Request) -> Response:
        name = path_value(request, "service")
        try:
            found = await registry.reset(name)
        except (OSError, TimeoutError) as exc:
            raise unavailable(exc) from None
        if not found:
            raise not_found(f"service '{name}' has no circuit breaker")
        breaker = registry.get(name)
        return json_response(200, breaker.describe() if breaker else {}, request_id_of(request))

    async def reset_all(request: Request) -> Response:
        try:
            count = await registry.reset_all()
        except (OSError, TimeoutError) as exc:
            raise unavailable(exc) from None
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
