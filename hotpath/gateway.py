"""The per-request dispatcher: limits, normalization, routing, plugin chain, proxy.

It speaks raw ASGI rather than BlackSheep's Request/Response: a proxy must pass status,
headers and body framing through untouched (HEAD and 304 keep their Content-Length, no
Content-Type is invented), and the hot path skips building objects it would discard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from hotpath import errors
from hotpath.context import Header, RequestContext
from hotpath.errors import JSON_CONTENT_TYPE, NO_STORE, RETRY_AFTER, ErrorCode, GatewayError
from hotpath.headers import XFF, TrustedProxies, new_request_id, safe_id
from hotpath.paths import UnsafePath, normalize
from hotpath.proxy import Proxy, ResponseAborted
from hotpath.request_body import ClientGone
from hotpath.responses import LocalResponse
from hotpath.router import RouteTable
from hotpath.telemetry import Telemetry

log: Final = logging.getLogger("gatehouse")

# Final: compiled code reads it from a static; a plain module global is a dict lookup per use.
perf_counter: Final = time.perf_counter

CLIENT_CLOSED: Final = 499  # nginx's convention, for logs and metrics only: nothing is sent


class Gateway:
    __slots__ = (
        "_keep_encoded_slash",
        "_max_header",
        "_max_uri",
        "_trusted",
        "_unrouted",
        "proxy",
        "table",
        "telemetry",
    )

    def __init__(
        self,
        table: RouteTable,
        proxy: Proxy,
        telemetry: Telemetry,
        trusted: TrustedProxies,
        *,
        max_uri_bytes: int,
        max_header_bytes: int,
        keep_encoded_slash: bool,
        unrouted_headers: list[Header] | None = None,
    ) -> None:
        self.table = table
        self.proxy = proxy
        self.telemetry = telemetry
        self._trusted = trusted
        self._max_uri = max_uri_bytes
        self._max_header = max_header_bytes
        self._keep_encoded_slash = keep_encoded_slash
        # Added to answers for requests that match no route, which no route's plugins see
        # (the security headers of default_plugins).
        self._unrouted: list[Header] = unrouted_headers or []

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = perf_counter()
        headers: list[Header] = scope["headers"]
        size = 0
        for k, v in headers:
            size += len(k) + len(v)
        by_name = dict(headers)  # last value wins: the few headers looked up by name
        client = scope.get("client")
        peer = client[0] if client else "0.0.0.0"
        client_ip = peer
        if self._trusted and XFF in by_name:
            xff = b",".join([v for k, v in headers if k == XFF])  # every hop, in order
            client_ip = self._trusted.client_from_chain(peer, xff)
        ctx = RequestContext(
            scope,
            receive,
            headers,
            peer=peer,
            client_ip=client_ip,
            request_id=safe_id(by_name.get(b"x-request-id")) or new_request_id(),
            correlation_id=safe_id(by_name.get(b"x-correlation-id")),
            started=started,
        )
        route = None
        try:
            raw_path: bytes = scope["raw_path"]
            if len(raw_path) + len(ctx.query) > self._max_uri:
                raise GatewayError(414, ErrorCode.BAD_REQUEST, f"the URI exceeds {self._max_uri} bytes")
            if not ctx.query.isascii():
                # Raw non-ASCII is invalid in a request target (RFC 3986); forwarding it would
                # let the client library re-encode it, changing the bytes the upstream sees.
                raise errors.bad_request("the query string must be ASCII (percent-encode other bytes)")
            if size > self._max_header:
                raise GatewayError(431, ErrorCode.BAD_REQUEST, f"request headers exceed {self._max_header} bytes")
            if b"content-length" in by_name or b"transfer-encoding" in by_name:
                ctx.body_length = declared_body(headers)
            try:
                ctx.path = normalize(raw_path, keep_encoded_slash=self._keep_encoded_slash)
            except UnsafePath as unsafe:
                raise errors.BAD_PATH.exception(
                    message=f"the request path cannot be normalized safely: {unsafe}"
                ) from None
            route = self.table.match(ctx.path, ctx.method)
            if route is None:
                raise self._no_route(ctx.path, ctx.method)
            ctx.route = route.info
            if route.template is not None:
                ctx.path_params = route.template.params(ctx.path)
            self.telemetry.request_started(ctx)
            for hook in route.chain.request:
                verdict = await hook(ctx)
                if verdict is not None:
                    ctx.refusal = verdict.refusal
                    await self._send_local(ctx, verdict, send)
                    return
            await self.proxy.forward(ctx, route, send)
        except GatewayError as exc:
            if ctx.route is None:
                self.telemetry.request_started(ctx)
            await self._send_error(ctx, exc, send)
        except ClientGone:
            if not ctx.status:
                ctx.status = CLIENT_CLOSED
        except asyncio.CancelledError:
            if not ctx.client_gone:
                raise  # shutdown or the server's own cancellation: not ours to swallow
            # The disconnect watcher (hotpath/proxy.py) stopped an exchange whose client left.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if not ctx.status:
                ctx.status = CLIENT_CLOSED
        except ResponseAborted:
            log.warning("response aborted: request_id=%s route=%s", ctx.request_id, route.name if route else "-")
            raise
        except Exception:
            log.exception("unhandled error: request_id=%s", ctx.request_id)
            if ctx.route is None:
                self.telemetry.request_started(ctx)
            if ctx.status:
                raise ResponseAborted("internal error mid-response") from None
            await self._send_error(ctx, errors.INTERNAL.exception(), send)
        finally:
            if route is not None:
                for log_hook in route.chain.log:
                    try:
                        log_hook(ctx)
                    except Exception:
                        log.exception("log-phase hook failed")
            self.telemetry.request_finished(ctx)

    def _no_route(self, path: str, method: str) -> GatewayError:
        allowed = self.table.allowed_methods(path)
        if allowed:
            return GatewayError(
                405,
                ErrorCode.BAD_REQUEST,
                f"method {method} is not allowed here",
                details={"allowed": sorted(allowed)},
                headers=((b"allow", ", ".join(sorted(allowed)).encode()),),
            )
        return errors.NOT_FOUND.exception()

    async def _send_local(self, ctx: RequestContext, local: LocalResponse, send: Any) -> None:
        out = [*local.headers, ctx.request_id_header]
        if ctx.correlation_header is not None:
            out.append(ctx.correlation_header)
        if ctx.response_headers:
            out.extend(ctx.response_headers)
        body = local.body
        if ctx.method == "HEAD":
            body = b""
        else:
            for k, _ in out:
                if k == b"content-length":
                    break
            else:
                out.append((b"content-length", str(len(body)).encode()))
        ctx.status = local.status
        ctx.bytes_out = len(body)
        await _send_final(send, local.status, out, body)

    async def _send_error(self, ctx: RequestContext, exc: GatewayError, send: Any) -> None:
        if ctx.status:
            raise ResponseAborted(exc.message)
        body = exc.body(ctx.request_id)
        out: list[Header] = [
            JSON_CONTENT_TYPE,
            (b"content-length", str(len(body)).encode()),
            ctx.request_id_header,
            NO_STORE,
        ]
        if ctx.correlation_header is not None:
            out.append(ctx.correlation_header)
        if exc.retry_after is not None:
            out.append((RETRY_AFTER, str(exc.retry_after).encode()))
        out.extend(exc.headers)
        out.extend(ctx.response_headers)
        if ctx.route is None and self._unrouted:
            out.extend(self._unrouted)
        ctx.status = exc.status
        ctx.bytes_out = len(body)
        await _send_final(send, exc.status, out, b"" if ctx.method == "HEAD" else body)


def declared_body(headers: list[Header]) -> int:
    """The request body's declared length: its Content-Length, -1 for a chunked body, 0 for
    none. A repeated or invalid Content-Length, or one beside Transfer-Encoding, is refused:
    where two parsers could disagree about where the body ends, a request can be smuggled."""
    length = -2
    chunked = False
    for k, v in headers:
        if k == b"content-length":
            if not v.isdigit() or length != -2:
                raise errors.bad_request("invalid or repeated Content-Length")
            length = int(v)
        elif k == b"transfer-encoding":
            chunked = True
    if chunked:
        if length != -2:
            raise errors.bad_request("both Content-Length and Transfer-Encoding are set")
        return -1
    return length if length > 0 else 0


async def _send_final(send: Any, status: int, headers: list[Header], body: bytes) -> None:
    """A whole response in two messages; a client already gone gets nothing more."""
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except (OSError, RuntimeError):
        pass
