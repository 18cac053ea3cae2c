"""``routes[].plugins.validate``: what a route accepts, checked at the edge.

Schemas are JSON Schema (draft 2020-12 unless the schema's ``$schema`` says otherwise),
written inline as a mapping or named as a file (a string: a path relative to the config
file). They are compiled once when the route is built (``plugins.validate.schemas``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from hotpath.structs import Strict

# A schema inline (a mapping) or the path of a JSON or YAML file holding one.
SchemaSource = dict[str, Any] | str
MediaType = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9*][a-z0-9!#$&^_.+*-]*$")]
FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

JSON_TYPE = "application/json"
FORM_TYPE = "multipart/form-data"


class FileRule(Strict, frozen=True, kw_only=True):
    """A file field of a form: which types, how large, how many."""

    # Media types allowed; each part's declared Content-Type and its magic bytes must agree
    # on one of them (plugins.validate.sniff lists the types that can be recognized).
    types: Annotated[tuple[MediaType, ...], msgspec.Meta(min_length=1)]
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 10 * 1024 * 1024
    max_count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    min_count: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0

    def __post_init__(self) -> None:
        if self.min_count > self.max_count:
            raise ValueError("min_count must not exceed max_count")


class FieldRule(Strict, frozen=True, kw_only=True):
    """A text field of a form: a JSON Schema for its value (a string), like a JSON value's."""

    schema: SchemaSource = {}
    required: bool = False
    # A text field is held to be checked, so it is bounded.
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=1024 * 1024)] = 64 * 1024


class MultipartConfig(Strict, frozen=True, kw_only=True):
    files: dict[FieldName, FileRule] = {}
    fields: dict[FieldName, FieldRule] = {}
    # Parts in all, and header bytes per part line (the parser also caps headers per part).
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    max_header_bytes: Annotated[int, msgspec.Meta(ge=256, le=65_536)] = 4096

    def __post_init__(self) -> None:
        both = set(self.files) & set(self.fields)
        if both:
            raise ValueError(f"'{sorted(both)[0]}' is both a file and a text field")


class ValidateConfig(Strict, frozen=True, kw_only=True):
    # Media types a request body may have (parameters such as charset are ignored). Empty:
    # application/json when ``body`` is set, multipart/form-data when ``multipart`` is.
    content_types: tuple[MediaType, ...] = ()
    body: SchemaSource | None = None
    query: SchemaSource | None = None
    path_params: SchemaSource | None = None
    multipart: MultipartConfig | None = None
    # Errors listed in a 400's details.
    max_errors: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    # A JSON object with a key twice: parsers disagree on which value counts, so by default
    # it is refused; ``last_wins`` takes the last one and parses faster.
    duplicate_keys: Literal["refuse", "last_wins"] = "refuse"

    def __post_init__(self) -> None:
        if self.body is None and self.query is None and self.path_params is None and self.multipart is None \
                and not self.content_types:
            raise ValueError("nothing to validate: set content_types, body, query, path_params or multipart")
        if self.content_types:
            types = set(self.content_types)
            if self.body is not None and not any(is_json(t) for t in types):
                raise ValueError("body needs a JSON media type in content_types (application/json or */*+json)")
            if self.multipart is not None and FORM_TYPE not in types:
                raise ValueError(f"multipart needs {FORM_TYPE} in content_types")

    def allowed_types(self) -> frozenset[str]:
        if self.content_types:
            return frozenset(self.content_types)
        implied = set()
        if self.body is not None:
            implied.add(JSON_TYPE)
        if self.multipart is not None:
            implied.add(FORM_TYPE)
        return frozenset(implied)


_JSON_SUFFIX = re.compile(r"^[a-z0-9.+-]+/[a-z0-9.+-]*\+json$")


def is_json(media_type: str) -> bool:
    return media_type == JSON_TYPE or _JSON_SUFFIX.match(media_type) is not None
