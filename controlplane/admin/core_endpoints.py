"""Admin endpoints over the gateway itself: effective configuration and services."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from blacksheep import Request, Response

from controlplane.admin.app import AdminEndpoint, json_response, request_id_of
from controlplane.admin.openapi import ok
from controlplane.admin.redact import effective_config

if TYPE_CHECKING:
    from controlplane.config.loader import LoadedConfig
    from hotpath.upstream.service import Service

_INSTANCE = {
    "type": "object",
    "required": ["url", "health"],
    "properties": {
        "url": {"type": "string"},
        "health": {"enum": ["up", "down", "unchecked"]},
        "latency_ms": {"type": ["number", "null"]},
        "error": {"type": ["string", "null"]},
    },
}
_SERVICE = {
    "type": "object",
    "required": ["name", "breaker", "instances"],
    "properties": {
        "name": {"type": "string"},
        "breaker": {"type": "object", "required": ["state"], "properties": {"state": {"type": "string"}}},
        "instances": {"type": "array", "items": _INSTANCE},
    },
}
_SERVICES = {
    "type": "object",
    "required": ["worker", "services"],
    "properties": {"worker": {"type": "integer"}, "services": {"type": "array", "items": _SERVICE}},
}


async def probe(url: str, limit: float) -> dict[str, Any]:
    """TCP reachability of one instance: can a connection be opened, and how fast."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        reason = "timeout" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        return {"url": url, "health": "down", "latency_ms": None, "error": reason}
    writer.close()
    latency = (time.perf_counter() - started) * 1000.0
    return {"url": url, "health": "up", "latency_ms": round(latency, 3), "error": None}


def breaker_view(service: Service) -> dict[str, Any]:
    breaker = service.breaker
    describe = getattr(breaker, "describe", None)
    view: dict[str, Any] = dict(describe()) if callable(describe) else {}
    view["state"] = breaker.state_name()
    return view


def core_endpoints(loaded: LoadedConfig, services: dict[str, Service], probe_timeout: float) -> list[AdminEndpoint]:
    config_doc = effective_config(loaded)

    async def get_config(request: Request) -> Response:
        return json_response(200, {"file": loaded.file, "config": config_doc}, request_id_of(request))

    async def list_services(request: Request) -> Response:
        check = request.query.get("probe", ["true"])[-1].lower() not in ("false", "0", "no")
        out = []
        for name, svc in services.items():
            if check:
                instances = list(await asyncio.gather(*(probe(u, probe_timeout) for u in svc.instances)))
            else:
                instances = [
                    {"url": u, "health": "unchecked", "latency_ms": None, "error": None} for u in svc.instances
                ]
            out.append({"name": name, "breaker": breaker_view(svc), "instances": instances})
        return json_response(200, {"worker": os.getpid(), "services": out}, request_id_of(request))

    return [
        AdminEndpoint(
            "GET",
            "/config",
            "config.read",
            get_config,
            {
                "summary": "The effective configuration, defaults filled in, secrets redacted",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["file", "config"],
                            "properties": {"file": {"type": "string"}, "config": {"type": "object"}},
                        }
                    )
                },
            },
        ),
        AdminEndpoint(
            "GET",
            "/services",
            "services.list",
            list_services,
            {
                "summary": "Services with each instance's reachability and the service's breaker state",
                "parameters": [
                    {
                        "name": "probe",
                        "in": "query",
                        "required": False,
                        "description": "false skips the TCP probe of each instance",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "responses": {"200": ok(_SERVICES)},
            },
        ),
    ]
