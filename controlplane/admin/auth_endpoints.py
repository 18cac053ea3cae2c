"""Admin endpoints of API keys: key sets, their keys, creating and revoking keys at run
time (``plugins.auth.admin``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blacksheep import Request, Response

from controlplane.admin.app import (
    OBJECT,
    AdminEndpoint,
    AdminError,
    bad_request,
    json_response,
    not_found,
    path_value,
    read_json,
    request_id_of,
    unavailable,
)
from controlplane.admin.openapi import error_doc, ok, path_param
from hotpath.errors import ErrorCode

if TYPE_CHECKING:
    from hotpath.runtime import WorkerRuntime

KEY_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["id", "subject", "tier", "scopes", "roles", "expires_at", "source"],
    "properties": {
        "id": {"type": "string"},
        "subject": {"type": "string"},
        "tier": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "roles": {"type": "array", "items": {"type": "string"}},
        "expires_at": {"type": ["number", "null"]},
        "expired": {"type": "boolean"},
        "source": {"type": "string", "enum": ["config", "redis"]},
        "created_at": {"type": ["number", "null"]},
        "key": {"type": "string", "description": "the key itself, only when the gateway made it"},
    },
}


def conflict(message: str) -> AdminError:
    return AdminError(409, ErrorCode.BAD_REQUEST, message)


def auth_endpoints(runtime: WorkerRuntime, settings: Any) -> list[AdminEndpoint]:
    from plugins.auth import admin as keys

    def failure(exc: Exception) -> AdminError:
        if isinstance(exc, keys.UnknownKeySet):
            return not_found(str(exc))
        if isinstance(exc, keys.NotManaged | keys.KeyExists):
            return conflict(str(exc))
        if isinstance(exc, ValueError):
            return bad_request(str(exc))
        return unavailable(exc)

    async def list_sets(request: Request) -> Response:
        return json_response(200, {"key_sets": keys.key_sets(settings)}, request_id_of(request))

    async def list_keys(request: Request) -> Response:
        try:
            data = await keys.list_keys(runtime, settings, path_value(request, "key_set"))
        except AdminError:
            raise
        except Exception as exc:
            raise failure(exc) from None
        return json_response(200, data, request_id_of(request))

    async def create(request: Request) -> Response:
        name = path_value(request, "key_set")
        body = await read_json(request)
        try:
            data = await keys.create_key(runtime, settings, name, body)
        except AdminError:
            raise
        except Exception as exc:
            raise failure(exc) from None
        return json_response(201, data, request_id_of(request))

    async def revoke(request: Request) -> Response:
        try:
            removed = await keys.revoke_key(runtime, settings, path_value(request, "key_set"),
                                            path_value(request, "key_id"))
        except AdminError:
            raise
        except Exception as exc:
            raise failure(exc) from None
        if not removed:
            raise not_found("no key with this id is stored in Redis for this key set")
        return json_response(200, {"revoked": True}, request_id_of(request))

    set_param = path_param("key_set", "API key set name (plugins.auth.key_sets)")
    conflict_doc = error_doc("The key set keeps its keys in the configuration, or the id or key is taken")
    return [
        AdminEndpoint(
            "GET",
            "/auth/key-sets",
            "auth.key_sets.list",
            list_sets,
            {
                "summary": "Configured API key sets",
                "responses": {
                    "200": ok({"type": "object", "required": ["key_sets"],
                               "properties": {"key_sets": {"type": "array", "items": OBJECT}}}),
                },
            },
        ),
        AdminEndpoint(
            "GET",
            "/auth/key-sets/{key_set}/keys",
            "auth.keys.list",
            list_keys,
            {
                "summary": "Every key of a set, from the configuration and from Redis (never a key or digest)",
                "parameters": [set_param],
                "responses": {
                    "200": ok({"type": "object", "required": ["key_set", "keys"],
                               "properties": {"key_set": {"type": "string"},
                                              "keys": {"type": "array", "items": KEY_ROW}}}),
                    "409": conflict_doc,
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
        AdminEndpoint(
            "POST",
            "/auth/key-sets/{key_set}/keys",
            "auth.keys.create",
            create,
            {
                "summary": "Create a key in Redis (made by the gateway and shown once, or imported by its digest)",
                "parameters": [set_param],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["subject"],
                        "additionalProperties": False,
                        "properties": {
                            "subject": {"type": "string"},
                            "id": {"type": "string"},
                            "tier": {"type": "string"},
                            "scopes": {"type": "array", "items": {"type": "string"}},
                            "roles": {"type": "array", "items": {"type": "string"}},
                            "expires_at": {"type": "string", "description": "RFC 3339 with a zone"},
                            "ttl": {"type": "integer", "description": "seconds from now"},
                            "hash": {"type": "string", "description": "sha256:<64 hex> of a key to import"},
                        },
                    }}},
                },
                "responses": {
                    "201": ok(KEY_ROW, "Created"),
                    "409": conflict_doc,
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
        AdminEndpoint(
            "DELETE",
            "/auth/key-sets/{key_set}/keys/{key_id}",
            "auth.keys.revoke",
            revoke,
            {
                "summary": "Revoke a key kept in Redis (every worker stops accepting it within the set's cache_ttl)",
                "parameters": [set_param, path_param("key_id", "The key's id")],
                "responses": {
                    "200": ok({"type": "object", "required": ["revoked"],
                               "properties": {"revoked": {"type": "boolean"}}}),
                    "409": conflict_doc,
                    "503": error_doc("Redis unavailable"),
                },
            },
        ),
    ]
