"""Validation failures per route and reason: ``gatehouse_validation_failures{route,reason}``.

Reasons: ``schema`` (a body, query or path parameter against its schema), ``malformed``
(JSON that does not parse, a form that does not parse), ``media_type`` (a body type the
route does not accept), ``too_large`` (a body or a form part over its limit), ``file_type``
(a file whose declared type or magic bytes are not allowed), ``form`` (a form's fields:
unexpected, missing, too many, or a text field that fails its schema).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from hotpath.deferred import DeferredCounter, deferred

REASONS: Final = ("schema", "malformed", "media_type", "too_large", "file_type", "form")

VALIDATION_FAILURES: Final = Counter(
    "gatehouse_validation_failures",
    "Requests refused by the validate plugin, by route and reason (schema, malformed, media_type, "
    "too_large, file_type, form).",
    ("route", "reason"),
)


def route_counters(route: str) -> dict[str, DeferredCounter]:
    """One route's counter children, resolved once."""
    return {reason: deferred(VALIDATION_FAILURES.labels(route, reason)) for reason in REASONS}
