"""Admin endpoint of signed URLs: sign one (``plugins.signed_url.admin``)."""

from __future__ import annotations

from typing import Any

from blacksheep import Request, Response

from controlplane.admin.app import AdminEndpoint, bad_request, json_response, not_found, read_json, request_id_of
from controlplane.admin.openapi import ok


def signed_url_endpoints(settings: Any) -> list[AdminEndpoint]:
    from plugins.signed_url import admin as signing

    async def sign(request: Request) -> Response:
        body = await read_json(request)
        try:
            data = signing.sign(settings, body)
        except signing.NotConfigured as exc:
            raise not_found(str(exc)) from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response(200, data, request_id_of(request))

    return [
        AdminEndpoint(
            "POST",
            "/signed-urls",
            "signed_urls.sign",
            sign,
            {
                "summary": "Sign an URL with the current key (or a chosen one)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["path"],
                        "additionalProperties": False,
                        "properties": {
                            "path": {"type": "string", "description": "normalized path, optionally with a query"},
                            "ttl": {"type": "integer", "description": "seconds (default 3600, at most max_ttl)"},
                            "method": {"type": "string", "enum": ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]},
                            "key_id": {"type": "string"},
                            "ip": {"type": "string", "description": "bind to this client address"},
                            "subject": {"type": "string", "description": "bind to this subject"},
                            "base_url": {"type": "string"},
                        },
                    }}},
                },
                "responses": {
                    "200": ok({
                        "type": "object",
                        "required": ["url", "expires_at", "method", "key_id"],
                        "properties": {
                            "url": {"type": "string"},
                            "expires_at": {"type": "integer"},
                            "method": {"type": "string"},
                            "key_id": {"type": "string"},
                        },
                    }),
                    "404": {"description": "No signing keys are configured",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            },
        ),
    ]
