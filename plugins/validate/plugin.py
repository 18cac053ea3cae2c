"""The validate plugin: a route's path parameters, query, body type, JSON body and form
are checked at the edge, and bad input never reaches the service.

- Path parameters and the query string are checked against their schemas first (no body
  is read for a request that fails them).
- A body's media type must be one the route allows (415 otherwise).
- A JSON body is read whole, up to the route's ``max_body_bytes``, parsed, checked, and then
  forwarded from the bytes already read (``hotpath.request_body.read_body``): the upstream
  receives exactly the bytes that were checked.
- A form (multipart/form-data) is checked while it streams (``plugins.validate.form``).

Refusals: 400 ``BAD_REQUEST`` with ``details.errors`` (each with ``in``, a JSON
``pointer`` or the form ``part``, and what was ``expected``), 413 for size, 415 for type.
Each carries a ``Refusal`` of type ``validation_failed`` for the audit plugin, and is
counted per route and reason (``plugins.validate.metrics``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from python_multipart.multipart import parse_options_header

from hotpath.audit import AuditType, Refusal
from hotpath.context import RequestContext
from hotpath.errors import JSON_CONTENT_TYPE, NO_STORE, ErrorCode, error_body
from hotpath.plugin import CONTINUE, LocalResponse, Plugin, PluginSetup, Verdict
from hotpath.request_body import BodyTooLarge, read_body
from plugins.validate.config import FORM_TYPE, ValidateConfig, is_json
from plugins.validate.form import FieldSpec, FileSpec, FormCheck, FormRules
from plugins.validate.metrics import REASONS, route_counters
from plugins.validate.parsing import Malformed, TextObject, parse_json
from plugins.validate.schemas import SchemaProblem, compile_schema, errors_of, load_schema
from plugins.validate.sniff import RECOGNIZED, canonical

BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
CONTENT_TYPE: Final = b"content-type"
# RFC 2046: 1 to 70 characters from a small set (checked before the parser sees it).
_BOUNDARY_CHARS: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ")


def media_type(value: bytes | None) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    if not value:
        return ""
    cut = value.find(b";")
    raw = value if cut < 0 else value[:cut]
    return raw.strip().lower().decode("latin-1")


class ValidatePlugin(Plugin[ValidateConfig]):
    name: ClassVar[str] = "validate"
    # After auth (1450) and rate limiting (900): junk is refused before it costs more, and
    # an unauthenticated caller learns nothing of a route's schema.
    priority: ClassVar[int] = 800
    config_type: ClassVar[type[ValidateConfig]] = ValidateConfig

    def __init__(self, config: ValidateConfig, setup: PluginSetup) -> None:
        super().__init__(config, setup)
        route = setup.route
        base = setup.config_dir
        where = f"route '{route.name}'"
        try:
            self._body = compile_schema(config.body, base, f"{where} body") if config.body is not None else None
            self._query, self._query_text = self._text_schema(config.query, base, f"{where} query")
            self._path, self._path_text = self._text_schema(config.path_params, base, f"{where} path_params")
            self._form = self._form_rules(config, base, where, route.name)
        except SchemaProblem as problem:
            raise ValueError(str(problem)) from None
        if self._path is not None and "{" not in route.path:
            raise ValueError("path_params needs a route path with parameters (a template such as /jobs/{id})")
        self._allowed = frozenset(config.allowed_types())
        self._allowed_list = sorted(self._allowed)
        self._limit = route.max_body_bytes
        self._refuse_duplicates = config.duplicate_keys == "refuse"
        self._max_errors = config.max_errors
        self._counters = route_counters(route.name)
        self._refusals = {reason: Refusal(AuditType.VALIDATION_FAILED, reason) for reason in REASONS}
        self._headers = [JSON_CONTENT_TYPE, NO_STORE]

    @staticmethod
    def _text_schema(source: Any, base: str, where: str) -> tuple[Any, TextObject | None]:
        if source is None:
            return None, None
        schema, _ = load_schema(source, base, where)
        return compile_schema(source, base, where), TextObject(schema)

    def _form_rules(self, config: ValidateConfig, base: str, where: str, route: str) -> FormRules | None:
        form = config.multipart
        if form is None:
            return None
        files: dict[str, FileSpec] = {}
        for name, rule in form.files.items():
            types = frozenset(canonical(t) for t in rule.types)
            unknown = sorted(types - RECOGNIZED)
            if unknown:
                raise SchemaProblem(f"{where} multipart.files.{name}.types: '{unknown[0]}' cannot be recognized "
                                    f"by its magic bytes, so it cannot be checked")
            files[name] = FileSpec(types, rule.max_bytes, rule.max_count, rule.min_count)
        fields = {
            name: FieldSpec(
                compile_schema(rule.schema, base, f"{where} multipart.fields.{name}.schema") if rule.schema else None,
                rule.required,
                rule.max_bytes,
            )
            for name, rule in form.fields.items()
        }
        return FormRules(
            files, fields, max_parts=form.max_parts, max_header_bytes=form.max_header_bytes,
            max_errors=config.max_errors, counters=route_counters(route),
            refusals={reason: Refusal(AuditType.VALIDATION_FAILED, reason) for reason in REASONS},
        )

    async def on_request(self, ctx: RequestContext) -> Verdict:
        errors: list[dict[str, Any]] | None = None
        if self._path is not None and ctx.path_params is not None:
            assert self._path_text is not None
            errors = self._check(self._path, self._path_text.from_params(ctx.path_params), "path")
        if self._query is not None:
            assert self._query_text is not None
            try:
                query = self._query_text.from_query(ctx.query)
            except Malformed as bad:
                return self._refuse(ctx, 400, "malformed", str(bad), [{"in": "query", "expected": str(bad)}])
            found = self._check(self._query, query, "query")
            errors = found if errors is None else (errors + found)[: self._max_errors]
        if errors:
            return self._refuse(ctx, 400, "schema", "the request does not match the route's schema", errors)
        if not ctx.body_length:
            if ctx.method in BODY_METHODS and (self._body is not None or self._form is not None):
                return self._refuse(ctx, 400, "schema", "this route needs a request body",
                                    [{"in": "body", "pointer": "", "expected": " or ".join(self._allowed_list)}])
            return CONTINUE
        kind = media_type(ctx.header(CONTENT_TYPE))
        if self._allowed and kind not in self._allowed:
            ctx.report("validate", "media_type")
            self._counters["media_type"].inc()
            body = error_body(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "this route does not accept this body type",
                              ctx.request_id, details={"allowed": self._allowed_list})
            return LocalResponse(415, self._headers, body, self._refusals["media_type"])
        if kind == FORM_TYPE and self._form is not None:
            return self._start_form(ctx)
        if self._body is not None and is_json(kind):
            return await self._check_json(ctx)
        return CONTINUE

    def _start_form(self, ctx: RequestContext) -> Verdict:
        assert self._form is not None
        _, options = parse_options_header(ctx.header(CONTENT_TYPE) or b"")
        boundary = options.get(b"boundary", b"")
        if not boundary or len(boundary) > 70 or not set(boundary) <= _BOUNDARY_CHARS:
            return self._refuse(ctx, 400, "malformed", "a multipart body needs a valid boundary parameter",
                                [{"in": "form", "expected": "a Content-Type boundary of 1 to 70 characters"}])
        ctx.tap_body(FormCheck(self._form, boundary, ctx))
        return CONTINUE

    async def _check_json(self, ctx: RequestContext) -> Verdict:
        try:
            raw = await read_body(ctx, self._limit)
        except BodyTooLarge:
            ctx.report("validate", "too_large")
            self._counters["too_large"].inc()
            body = error_body(ErrorCode.PAYLOAD_TOO_LARGE, f"request body exceeds the route limit of {self._limit} "
                              "bytes", ctx.request_id, details={"limit_bytes": self._limit})
            return LocalResponse(413, self._headers, body, self._refusals["too_large"])
        try:
            value = parse_json(raw, self._refuse_duplicates)
        except Malformed as bad:
            return self._refuse(ctx, 400, "malformed", "the body is not valid JSON",
                                [{"in": "body", "expected": str(bad)}])
        errors = self._check(self._body, value, "body")
        if errors:
            return self._refuse(ctx, 400, "schema", "the request does not match the route's schema", errors)
        return CONTINUE

    def _check(self, validator: Any, value: Any, where: str) -> list[dict[str, Any]]:
        if validator.is_valid(value):
            return []
        return [{"in": where, **e} for e in errors_of(validator, value, self._max_errors)]

    def _refuse(
        self, ctx: RequestContext, status: int, reason: str, message: str, errors: list[dict[str, Any]]
    ) -> LocalResponse:
        ctx.report("validate", reason)
        self._counters[reason].inc()
        body = error_body(ErrorCode.BAD_REQUEST, message, ctx.request_id, details={"errors": errors})
        return LocalResponse(status, self._headers, body, self._refusals[reason])
