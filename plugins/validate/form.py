"""Uploads (multipart/form-data) checked while they stream to the upstream.

``FormCheck`` is a request-body tap: it parses each chunk with python-multipart's streaming
parser before the proxy sends that chunk on, and refuses the body (a ``GatewayError``
raised from ``feed`` or ``finish``) at the first part that breaks the route's rules. The
proxy then aborts the upstream request, so the service never sees a truncated upload as
complete. Only what a check needs is held: the first bytes of each file (to sniff its
type) and text fields up to their ``max_bytes``; file contents pass through.
"""

from __future__ import annotations

from typing import Any, Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from hotpath.audit import Refusal
from hotpath.context import BodyTap, RequestContext
from hotpath.deferred import DeferredCounter
from hotpath.errors import ErrorCode, GatewayError
from plugins.validate.schemas import errors_of
from plugins.validate.sniff import SNIFF_BYTES, canonical, sniff

MAX_NAME_ECHO: Final = 64


class FileSpec:
    """A file field's rules, compiled."""

    __slots__ = ("max_bytes", "max_count", "min_count", "types")

    def __init__(self, types: frozenset[str], max_bytes: int, max_count: int, min_count: int) -> None:
        self.types = types  # canonical media types
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.min_count = min_count


class FieldSpec:
    """A text field's rules, compiled."""

    __slots__ = ("max_bytes", "required", "validator")

    def __init__(self, validator: Any, required: bool, max_bytes: int) -> None:
        self.validator = validator
        self.required = required
        self.max_bytes = max_bytes


class FormRules:
    """A route's form rules, and what it refuses with (shared by every request's check)."""

    __slots__ = ("counters", "fields", "files", "max_errors", "max_header_bytes", "max_parts", "refusals")

    def __init__(
        self,
        files: dict[str, FileSpec],
        fields: dict[str, FieldSpec],
        *,
        max_parts: int,
        max_header_bytes: int,
        max_errors: int,
        counters: dict[str, DeferredCounter],
        refusals: dict[str, Refusal],
    ) -> None:
        self.files = files
        self.fields = fields
        self.max_parts = max_parts
        self.max_header_bytes = max_header_bytes
        self.max_errors = max_errors
        self.counters = counters
        self.refusals = refusals


class _Refused(Exception):
    """Raised inside the parser's callbacks; ``FormCheck`` turns it into the client's error."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details


def _echo(name: str) -> str:
    return name if len(name) <= MAX_NAME_ECHO else name[:MAX_NAME_ECHO] + "…"


_CODES: Final = {400: ErrorCode.BAD_REQUEST, 413: ErrorCode.PAYLOAD_TOO_LARGE,
                 415: ErrorCode.UNSUPPORTED_MEDIA_TYPE}


class FormCheck(BodyTap):
    """One request's form, parsed and checked chunk by chunk."""

    __slots__ = (
        "_ctx",
        "_ended",
        "_file",
        "_head",
        "_headers",
        "_hname",
        "_hvalue",
        "_name",
        "_parser",
        "_parts",
        "_rules",
        "_seen",
        "_size",
        "_sniffed",
        "_text",
        "_text_spec",
    )

    def __init__(self, rules: FormRules, boundary: bytes, ctx: RequestContext) -> None:
        self._rules = rules
        self._ctx = ctx
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            max_header_size=rules.max_header_bytes,
        )
        self._ended = False
        self._parts = 0
        self._seen: dict[str, int] = {}  # parts per field name
        self._headers: dict[bytes, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._name = ""
        self._file: FileSpec | None = None
        self._text_spec: FieldSpec | None = None
        self._size = 0
        self._head = bytearray()  # a file's first bytes, until sniffed
        self._sniffed = False
        self._text = bytearray()

    # -- the tap -------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        if self._ended:
            return  # the epilogue after the closing boundary is ignored, as RFC 2046 says
        try:
            self._parser.write(chunk)
        except _Refused as refused:
            raise self._refuse(refused) from None
        except (MultipartParseError, ValueError) as exc:
            raise self._refuse(_Refused(400, "malformed", "the multipart body is malformed",
                                        {"errors": [{"in": "form", "expected": _parse_problem(exc)}]})) from None

    def finish(self, complete: bool) -> None:
        if not complete:
            return
        try:
            if not self._ended:
                raise _Refused(400, "malformed", "the multipart body ends before its closing boundary",
                               {"errors": [{"in": "form", "expected": "a closing boundary"}]})
            self._check_totals()
        except _Refused as refused:
            raise self._refuse(refused) from None

    def _refuse(self, refused: _Refused) -> GatewayError:
        rules = self._rules
        rules.counters[refused.reason].inc()
        self._ctx.refusal = rules.refusals[refused.reason]
        self._ctx.report("validate", refused.reason)
        return GatewayError(refused.status, _CODES[refused.status], refused.message, details=refused.details)

    # -- parser callbacks ----------------------------------------------------------------

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._rules.max_parts:
            raise _Refused(400, "form", f"the form has more than {self._rules.max_parts} parts",
                           {"errors": [{"in": "form", "expected": f"at most {self._rules.max_parts} parts"}]})
        self._headers = {}
        self._name = ""
        self._file = None
        self._text_spec = None
        self._size = 0
        self._head = bytearray()
        self._sniffed = False
        self._text = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).strip().lower()] = bytes(self._hvalue).strip()
        self._hname = bytearray()
        self._hvalue = bytearray()

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition")
        index = self._parts
        if disposition is None:
            raise _form_error(f"part {index} has no Content-Disposition header", {"part_index": index},
                              "a Content-Disposition: form-data header with a name")
        kind, options = parse_options_header(disposition)
        raw_name = options.get(b"name")
        if kind != b"form-data" or not raw_name:
            raise _form_error(f"part {index} is not a named form-data part", {"part_index": index},
                              "Content-Disposition: form-data with a name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise _form_error(f"part {index} has a name that is not UTF-8", {"part_index": index},
                              "a UTF-8 field name") from None
        self._name = name
        count = self._seen.get(name, 0) + 1
        self._seen[name] = count
        rules = self._rules
        file = rules.files.get(name)
        if file is not None:
            if count > file.max_count:
                raise _form_error(f"field '{_echo(name)}' has more than {file.max_count} files", {"part": name},
                                  f"at most {file.max_count} files")
            declared = canonical(parse_options_header(self._headers.get(b"content-type", b""))[0].decode("latin-1"))
            if declared not in file.types:
                raise _Refused(415, "file_type", f"field '{_echo(name)}' declares a type it does not accept",
                               {"errors": [{"in": "form", "part": _echo(name), "expected": sorted(file.types),
                                            "found": _echo(declared) or "no Content-Type"}]})
            self._file = file
            return
        field = rules.fields.get(name)
        if field is None:
            raise _form_error(f"unexpected field '{_echo(name)}'", {"part": name}, "no such field")
        if b"filename" in options:
            raise _form_error(f"field '{_echo(name)}' takes text, not a file", {"part": name}, "a text value")
        self._text_spec = field

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        size = self._size = self._size + (end - start)
        file = self._file
        if file is not None:
            if size > file.max_bytes:
                raise _Refused(413, "too_large", f"file '{_echo(self._name)}' exceeds {file.max_bytes} bytes",
                               {"errors": [{"in": "form", "part": _echo(self._name), "limit_bytes": file.max_bytes,
                                            "expected": f"at most {file.max_bytes} bytes"}]})
            if not self._sniffed:
                self._head += data[start:end]
                if len(self._head) >= SNIFF_BYTES:
                    self._check_type()
            return
        field = self._text_spec
        if field is not None:
            if size > field.max_bytes:
                raise _Refused(413, "too_large", f"field '{_echo(self._name)}' exceeds {field.max_bytes} bytes",
                               {"errors": [{"in": "form", "part": _echo(self._name),
                                            "limit_bytes": field.max_bytes,
                                            "expected": f"at most {field.max_bytes} bytes"}]})
            self._text += data[start:end]

    def _part_end(self) -> None:
        if self._file is not None:
            if not self._sniffed:
                self._check_type()
            return
        field = self._text_spec
        if field is None:
            return
        try:
            value = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise _form_error(f"field '{_echo(self._name)}' is not UTF-8 text", {"part": self._name},
                              "UTF-8 text") from None
        if field.validator is not None:
            errors = errors_of(field.validator, value, self._rules.max_errors)
            if errors:
                for e in errors:
                    e["in"] = "form"
                    e["part"] = _echo(self._name)
                raise _Refused(400, "form", f"field '{_echo(self._name)}' does not match its schema",
                               {"errors": errors})

    def _end(self) -> None:
        self._ended = True

    # -- checks --------------------------------------------------------------------------

    def _check_type(self) -> None:
        self._sniffed = True
        file = self._file
        assert file is not None
        found = sniff(bytes(self._head))
        self._head = bytearray()
        declared = canonical(parse_options_header(self._headers.get(b"content-type", b""))[0].decode("latin-1"))
        if found != declared:
            raise _Refused(415, "file_type",
                           f"file '{_echo(self._name)}' is not what it declares: its bytes say otherwise",
                           {"errors": [{"in": "form", "part": _echo(self._name), "expected": declared,
                                        "found": found or "unrecognized"}]})

    def _check_totals(self) -> None:
        rules = self._rules
        for name, file in rules.files.items():
            if self._seen.get(name, 0) < file.min_count:
                raise _form_error(f"field '{_echo(name)}' needs at least {file.min_count} file(s)", {"part": name},
                                  f"at least {file.min_count} files")
        for name, field in rules.fields.items():
            if field.required and name not in self._seen:
                raise _form_error(f"field '{_echo(name)}' is required", {"part": name}, "a value (required)")


def _form_error(message: str, where: dict[str, Any], expected: str) -> _Refused:
    entry: dict[str, Any] = {"in": "form"}
    for key, value in where.items():
        entry[key] = _echo(value) if isinstance(value, str) else value
    entry["expected"] = expected
    return _Refused(400, "form", message, {"errors": [entry]})


def _parse_problem(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
