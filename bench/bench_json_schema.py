"""Choosing the JSON Schema library (plugins/validate): the same 2020-12 schema and ~1 KB
body through each candidate, and the JSON parsers the plugin could use before it.

Candidates: ``jsonschema-rs`` (Rust, PyO3) and ``jsonschema`` (pure Python). A third,
``fastjsonschema``, supports drafts 4, 6 and 7 only: ``test_fastjsonschema_is_not_2020_12``
shows it reading a 2020-12 schema with draft-7 meaning, which rules it out.
Figures: docs/performance.md ("What was measured when choosing"), bench/results/.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import fastjsonschema
import jsonschema
import jsonschema_rs
import orjson
import pytest

from bench.support.fixture_types import Benchmark
from bench.support.search_body import BODY, BODY_BYTES, SCHEMA

pytestmark = pytest.mark.benchmark(group="json-schema")

INVALID = copy.deepcopy(BODY)
INVALID["limit"] = 70
INVALID["filters"]["language"] = "english"


def bench_jsonschema_rs_valid(benchmark: Benchmark) -> None:
    validator = jsonschema_rs.validator_for(SCHEMA)
    assert benchmark(validator.is_valid, BODY) is True


def bench_jsonschema_rs_invalid_errors(benchmark: Benchmark) -> None:
    validator = jsonschema_rs.validator_for(SCHEMA)

    def errors() -> list[Any]:
        return list(validator.iter_errors(INVALID))

    assert len(benchmark(errors)) == 2


def bench_jsonschema_valid(benchmark: Benchmark) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert benchmark(validator.is_valid, BODY) is True


def bench_jsonschema_invalid_errors(benchmark: Benchmark) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)

    def errors() -> list[Any]:
        return list(validator.iter_errors(INVALID))

    assert len(benchmark(errors)) == 2


def test_fastjsonschema_is_not_2020_12() -> None:
    """2020-12's ``prefixItems`` is ignored and ``items: false`` read as draft 7's: a body
    the schema allows is refused, and one it refuses is allowed."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
              "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False}
    assert jsonschema_rs.validator_for(schema).is_valid([30.0, 600.0])
    assert not jsonschema_rs.validator_for({**schema, "items": {}}).is_valid(["a"])
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        fastjsonschema.compile(schema)([30.0, 600.0])
    assert fastjsonschema.compile({**schema, "items": {}})(["a"]) == ["a"]


@pytest.mark.benchmark(group="json-parse")
def bench_parse_orjson(benchmark: Benchmark) -> None:
    assert benchmark(orjson.loads, BODY_BYTES) == BODY


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


@pytest.mark.benchmark(group="json-parse")
def bench_parse_stdlib_refusing_duplicates(benchmark: Benchmark) -> None:
    """What refusing duplicate keys costs: the stdlib parser calls a hook per object."""
    assert benchmark(json.loads, BODY_BYTES, object_pairs_hook=_no_duplicates) == BODY
