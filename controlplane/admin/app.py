"""The admin BlackSheep application: token check, audit, endpoints, OpenAPI document.

Every request must carry ``Authorization: Bearer <token>``; the comparison is constant
time. Every authenticated request is an admin action and emits an ``ADMIN_ACTION`` audit
event (reads included: the effective config is sensitive); a refused one emits
``AUTH_FAILURE``. Errors use the gateway's uniform JSON error body.

Endpoints are registered from ``AdminEndpoint`` tables (``endpoints.py`` and the feature
modules), so the router, the 405 answers and the OpenAPI document come from one list.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import orjson
from blacksheep import Application, Request, Response
from blacksheep.contents import Content
from blacksheep.server.routing import Router

from hotpath.audit import AuditEvent, AuditSink, AuditType
from hotpath.errors import ErrorCode, error_body
from hotpath.headers import new_request_id

Handler = Callable[[Request], Awaitable[Response]]

_JSON = b"application/json"
_AUTH_PREFIX = b"bearer "
log = logging.getLogger("gatehouse.admin")
_PARAM = re.compile(r"\{([a-z_]+)\}")


class AdminError(Exception):
    """An admin request that cannot be served; becomes the uniform error body."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str) -> AdminError:
    return AdminError(404, ErrorCode.NOT_FOUND, message)


def bad_request(message: str) -> AdminError:
    return AdminError(400, ErrorCode.BAD_REQUEST, message)


class AdminEndpoint:
    """One operation: route, handler, audit action name, and its OpenAPI operation."""

    __slots__ = ("action", "handler", "method", "openapi", "path")

    def __init__(self, method: str, path: str, action: str, handler: Handler, openapi: dict[str, Any]) -> None:
        self.method = method
        self.path = path
        self.action = action
        self.handler = handler
        self.openapi = openapi

    def pattern(self) -> re.Pattern[str]:
        """The path as a regex, for the 405 check of the fallback."""
        out, pos = "^", 0
        for m in _PARAM.finditer(self.path):
            out += re.escape(self.path[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        return re.compile(out + re.escape(self.path[pos:]) + "$")


def json_response(status: int, payload: Any, request_id: str = "") -> Response:
    headers = [(b"cache-control", b"no-store"), (b"x-gatehouse-worker", str(os.getpid()).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode("ascii")))
    return Response(status, headers, Content(_JSON, orjson.dumps(payload)))


def error_response(status: int, code: ErrorCode, message: str, request_id: str) -> Response:
    headers = [(b"cache-control", b"no-store"), (b"x-request-id", request_id.encode("ascii"))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="gatehouse-admin"'))
    return Response(status, headers, Content(_JSON, error_body(code, message, request_id)))


def _scope(request: Request) -> dict[str, Any]:
    """The ASGI scope as a plain dict: the admin app keeps its per-request notes there."""
    return cast(dict[str, Any], request.scope)


def request_id_of(request: Request) -> str:
    rid: str = _scope(request).get("gatehouse.request_id", "")
    return rid


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.read()
    if not body:
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    return data


class AdminApplication(Application):
    def __init__(self, token: str, audit: AuditSink, endpoints: Sequence[AdminEndpoint], openapi: dict[str, Any]):
        # Its own router: BlackSheep refuses two applications sharing the default one.
        super().__init__(show_error_details=False, router=Router())
        self._token = token.encode("utf-8")
        self._audit = audit
        self._endpoints = tuple(endpoints)
        self._openapi = orjson.dumps(openapi)

        async def openapi_document(request: Request) -> Response:
            return Response(200, [(b"cache-control", b"no-store")], Content(_JSON, self._openapi))

        self._endpoints = (
            AdminEndpoint("GET", "/openapi.json", "openapi.read", openapi_document, {}),
            *self._endpoints,
        )
        self._patterns = [(e.pattern(), e) for e in self._endpoints]
        self.middlewares.append(self._guard)
        for endpoint in self._endpoints:
            self.router.add(endpoint.method, endpoint.path, self._wrap(endpoint))

        async def fallback(request: Request) -> Response:
            return self._fallback(request)

        self.router.fallback = fallback

    def _wrap(self, endpoint: AdminEndpoint) -> Handler:
        handler = endpoint.handler

        async def run(request: Request) -> Response:
            _scope(request)["gatehouse.action"] = endpoint.action
            try:
                return await handler(request)
            except AdminError as exc:
                return error_response(exc.status, exc.code, exc.message, request_id_of(request))

        return run

    def _fallback(self, request: Request) -> Response:
        rid = request_id_of(request)
        path = request.scope["path"]
        allowed = sorted({e.method for p, e in self._patterns if p.match(path)})
        if allowed:
            resp = error_response(405, ErrorCode.BAD_REQUEST, f"method {request.method} is not allowed here", rid)
            resp.add_header(b"allow", ", ".join(allowed).encode())
            return resp
        return error_response(404, ErrorCode.NOT_FOUND, "no admin endpoint at this path", rid)

    def authorized(self, request: Request) -> bool:
        values = request.headers.get(b"authorization")
        if len(values) != 1:  # none, or an ambiguous pair a proxy might have merged differently
            return False
        value = values[0]
        if len(value) <= len(_AUTH_PREFIX) or value[:7].lower() != _AUTH_PREFIX:
            return False
        return hmac.compare_digest(value[7:].strip(), self._token)

    async def _guard(self, request: Request, handler: Handler) -> Response:
        rid = new_request_id()
        _scope(request)["gatehouse.request_id"] = rid
        client = request.scope.get("client")
        client_ip = client[0] if client else None
        if not self.authorized(request):
            self._audit.emit(
                AuditEvent(
                    time=time.time(),
                    type=AuditType.AUTH_FAILURE,
                    reason="admin API request without a valid token",
                    request_id=rid,
                    client_ip=client_ip,
                    route="admin",
                    details={"method": request.method, "path": request.scope["path"]},
                )
            )
            return error_response(401, ErrorCode.UNAUTHORIZED, "a valid admin token is required", rid)
        try:
            response: Response = await handler(request)
        except AdminError as exc:
            response = error_response(exc.status, exc.code, exc.message, rid)
        except Exception:
            log.exception("admin request failed: request_id=%s", rid)
            response = error_response(500, ErrorCode.INTERNAL_ERROR, "internal admin API error", rid)
        if response.get_first_header(b"x-request-id") is None:
            response.add_header(b"x-request-id", rid.encode("ascii"))
        action: str | None = _scope(request).get("gatehouse.action")
        if action is not None:
            self._audit.emit(
                AuditEvent(
                    time=time.time(),
                    type=AuditType.ADMIN_ACTION,
                    reason=action,
                    request_id=rid,
                    client_ip=client_ip,
                    route="admin",
                    details={
                        "method": request.method,
                        "path": request.scope["path"],
                        "status": response.status,
                        "worker": os.getpid(),
                        **(request.route_values or {}),
                    },
                )
            )
        return response


OBJECT: dict[str, Any] = {"type": "object"}
DELETED: dict[str, Any] = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}}


def unavailable(exc: BaseException) -> AdminError:
    """Redis could not be reached during an operation: 503."""
    return AdminError(503, ErrorCode.SERVICE_UNAVAILABLE, f"shared state unavailable: {type(exc).__name__}")


def path_value(request: Request, name: str) -> str:
    value = request.route_values.get(name)
    if not value:
        raise bad_request(f"missing path parameter {name}")
    return str(value)


def query_value(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None
