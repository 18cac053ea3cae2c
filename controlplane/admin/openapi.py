"""The admin API's OpenAPI 3.1 document, assembled from its endpoint table.

Each endpoint declares its own operation (summary, parameters, body, 200 schema); the
parts every operation shares (bearer auth, the uniform error body for 400/401/404/405)
are added here, so the document cannot drift from what the router serves.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.admin.app import AdminEndpoint

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retry_after": {"type": "integer"},
                "details": {"type": "object"},
            },
        },
        "request_id": {"type": ["string", "null"]},
    },
}


def error_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def build_document(endpoints: Sequence[AdminEndpoint], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op = copy.deepcopy(e.openapi)
        op.setdefault("operationId", e.action.replace(".", "_"))
        responses = op.setdefault("responses", {})
        responses.setdefault("401", error_doc("Missing or wrong admin token"))
        responses.setdefault("405", error_doc("Method not allowed on this path"))
        if "{" in e.path or op.get("requestBody"):
            responses.setdefault("400", error_doc("Invalid request"))
        if "{" in e.path:
            responses.setdefault("404", error_doc("No such resource"))
        paths.setdefault(e.path, {})[e.method.lower()] = op
    paths.setdefault("/openapi.json", {})["get"] = {
        "operationId": "openapi_read",
        "summary": "This document",
        "responses": {
            "200": ok({"type": "object"}),
            "401": error_doc("Missing or wrong admin token"),
            "405": error_doc("Method not allowed on this path"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse admin API",
            "version": version,
            "description": "Operational control of a Gatehouse gateway. Every call needs the admin token "
            "(Authorization: Bearer ...) and emits an audit event.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
        "paths": paths,
    }
