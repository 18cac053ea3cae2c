"""Turning request input into the values a schema checks: JSON bodies, query strings, path
parameters.

Query strings and path parameters arrive as text. A schema property whose type is
``integer``, ``number`` or ``boolean`` gets the text converted first (``"25"`` -> 25), so
``{type: integer, maximum: 50}`` means what it says; text that does not convert stays text
and fails the type check with a pointer to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson


class Malformed(ValueError):
    """Input that cannot be read at all (not JSON, not UTF-8, too deep)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Malformed(f"duplicate key {_short(key)} in an object")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _short(text: str) -> str:
    return json.dumps(text[:32] + ("…" if len(text) > 32 else ""))


def parse_json(body: bytes, refuse_duplicates: bool) -> Any:
    """The body's value, or ``Malformed``. Never raises anything else for bad input."""
    if not refuse_duplicates:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"not valid JSON: {exc.msg}") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except Malformed:
        raise
    except json.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:
        raise Malformed("nested too deeply") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise Malformed(f"not valid JSON: {str(exc)[:80]}") from None


def _to_int(text: str) -> Any:
    stripped = text[1:] if text[:1] == "-" else text
    return int(text) if stripped.isdigit() and stripped.isascii() and len(stripped) <= 18 else text


def _to_number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    if value != value or value in (float("inf"), float("-inf")):
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _to_bool(text: str) -> Any:
    return {"true": True, "false": False}.get(text, text)


_CONVERTERS: Final[dict[str, Callable[[str], Any]]] = {
    "integer": _to_int, "number": _to_number, "boolean": _to_bool,
}


class TextObject:
    """Builds the object a query or path-parameter schema checks, converting by the
    schema's top-level property types (prepared once)."""

    __slots__ = ("_convert",)

    def __init__(self, schema: Any) -> None:
        self._convert: dict[str, Callable[[str], Any]] = {}
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict):
            return
        for name, prop in props.items():
            if not isinstance(prop, dict):
                continue
            types = prop.get("type")
            if isinstance(types, str):
                types = [types]
            if not isinstance(types, list):
                continue
            for t in ("integer", "number", "boolean"):
                if t in types and "string" not in types:
                    self._convert[name] = _CONVERTERS[t]
                    break

    def _value(self, name: str, text: str) -> Any:
        convert = self._convert.get(name)
        return convert(text) if convert is not None else text

    def from_params(self, params: dict[str, str]) -> dict[str, Any]:
        return {name: self._value(name, text) for name, text in params.items()}

    def from_query(self, query: bytes) -> dict[str, Any]:
        """Names to values; a repeated name gives an array. Raises ``Malformed``."""
        try:
            pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise Malformed("the query string is not valid percent-encoded UTF-8") from None
        out: dict[str, Any] = {}
        for name, text in pairs:
            value = self._value(name, text)
            if name in out:
                prev = out[name]
                if isinstance(prev, list):
                    prev.append(value)
                else:
                    out[name] = [prev, value]
            else:
                out[name] = value
        return out
