"""JSON Schemas compiled once (jsonschema-rs), and their errors as the client sees them.

``jsonschema-rs`` was chosen by measurement over ``jsonschema`` (``fastjsonschema`` has no
draft 2020-12): bench/bench_json_schema.py, docs/performance.md. Schemas are compiled
offline (no ``$ref`` is fetched from the network) and ``format`` is checked.

An error names where the offending value is (a JSON pointer) and what was expected, in
words built from the schema, never from the value: a client's value may be large or
secret, so it is never echoed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

import jsonschema_rs
import yaml

from plugins.validate.config import SchemaSource

# Bounds of what an error repeats: a pointer's tokens and the schema text it quotes.
MAX_TOKEN: Final = 64
MAX_POINTER: Final = 256
MAX_QUOTE: Final = 120


class SchemaProblem(ValueError):
    """A schema that cannot be used; the message names the file and the schema path."""


def load_schema(source: SchemaSource, config_dir: str, where: str) -> tuple[dict[str, Any] | bool, str]:
    """(the schema, a label naming where it came from) for a source written in the config."""
    if isinstance(source, dict):
        return source, f"{where} (inline)"
    path = source if os.path.isabs(source) else os.path.join(config_dir, source)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SchemaProblem(f"{where}: cannot read schema file {path}: {exc.strerror or exc}") from None
    try:
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SchemaProblem(f"{where}: schema file {path} is not valid {_kind(path)}: {exc}") from None
    if not isinstance(loaded, dict | bool):
        raise SchemaProblem(f"{where}: schema file {path} must hold a JSON Schema object")
    return loaded, f"{where} (file {path})"


def _kind(path: str) -> str:
    return "JSON" if path.endswith(".json") else "YAML"


def compile_schema(source: SchemaSource, config_dir: str, where: str) -> Any:
    """A compiled validator, or ``SchemaProblem`` naming the file and the schema path."""
    schema, label = load_schema(source, config_dir, where)
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=True, offline=True)
    except jsonschema_rs.ValidationError as exc:
        # The schema fails its meta-schema: the error's instance path is a path in the schema.
        at = pointer(exc.instance_path) or "/"
        raise SchemaProblem(f"{label}: invalid schema at {at}: {_first_line(exc.message)}") from None
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        raise SchemaProblem(f"{label}: invalid schema: {_first_line(str(exc))}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "invalid"


def _token(part: Any) -> str:
    token = str(part)
    if len(token) > MAX_TOKEN:
        token = token[:MAX_TOKEN] + "…"
    return token.replace("~", "~0").replace("/", "~1")


def pointer(path: Any) -> str:
    """A JSON pointer (RFC 6901) from a list of keys and indexes, bounded in length."""
    text = "".join("/" + _token(p) for p in path)
    return text if len(text) <= MAX_POINTER else text[:MAX_POINTER] + "…"


def _quote(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"


def describe(error: Any) -> dict[str, str]:
    """``{"pointer", "expected"}`` for one jsonschema-rs error, from the schema's side only."""
    kind = error.kind
    name = type(kind).__name__
    path = list(error.instance_path)
    keyword = next((str(p) for p in reversed(error.schema_path) if isinstance(p, str)), "")
    expected: str
    if name == "Type":
        expected = " or ".join(str(t) for t in kind.types)
    elif name == "Required":
        path.append(kind.property)
        expected = "a value (required)"
    elif name in ("AdditionalProperties", "UnevaluatedProperties"):
        unexpected = list(kind.unexpected)
        if unexpected:
            path.append(unexpected[0])
        expected = "no such property"
    elif name in ("MinLength", "MaxLength"):
        expected = f"{'at least' if name == 'MinLength' else 'at most'} {kind.limit} characters"
    elif name in ("MinItems", "MaxItems"):
        expected = f"{'at least' if name == 'MinItems' else 'at most'} {kind.limit} items"
    elif name in ("MinProperties", "MaxProperties"):
        expected = f"{'at least' if name == 'MinProperties' else 'at most'} {kind.limit} properties"
    elif name in ("Minimum", "Maximum", "ExclusiveMinimum", "ExclusiveMaximum"):
        op = {"Minimum": ">=", "Maximum": "<=", "ExclusiveMinimum": ">", "ExclusiveMaximum": "<"}[name]
        expected = f"a number {op} {kind.limit}"
    elif name == "Pattern":
        expected = f"a string matching {_quote(kind.pattern)}"
    elif name == "Enum":
        expected = f"one of {_quote(list(kind.options))}"
    elif name == "Constant":
        expected = f"the value {_quote(kind.expected_value)}"
    elif name == "Format":
        expected = f"a string in format {_quote(kind.format)}"
    elif name == "MultipleOf":
        expected = f"a multiple of {kind.multiple_of}"
    elif name == "UniqueItems":
        expected = "unique items"
    elif name == "FalseSchema":
        expected = "no value here"
    else:
        at = pointer(error.schema_path) or "/"
        expected = f"to satisfy '{keyword or name}' (schema {at})"
    return {"pointer": pointer(path), "expected": expected}


def errors_of(validator: Any, instance: Any, limit: int) -> list[dict[str, str]]:
    """Up to ``limit`` described errors (the iterator is lazy: a huge invalid array costs
    only the errors taken)."""
    found: list[dict[str, str]] = []
    for error in validator.iter_errors(instance):
        found.append(describe(error))
        if len(found) >= limit:
            break
    return found
