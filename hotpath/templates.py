"""Path templates: routes whose path has named parameters (``/jobs/{job_id}/stream``).

A parameter is a whole segment: ``{name}`` (any non-empty segment), ``{name:int}`` (ASCII
digits) or ``{name:<regex>}`` (the regex must match the whole segment; it cannot contain
``/``). The templates of a route table are compiled once into a tree of segments
(``TemplateTree``): at each level the static segments are tried first (one dict probe),
then the parameters, typed ones before plain ones, so a lookup costs the path's depth and
not the number of routes.

Two templates that would match the same paths with the same specificity (the same shape of
static and parameter segments) and the same methods are a conflict: ``TemplateConflict``
names both, and the config loader reports it with file and line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Parameter kinds, in the order a lookup tries them at one level.
INT: Final = 0
REGEX: Final = 1
ANY: Final = 2


class TemplateError(ValueError):
    """A path template that cannot be compiled; the message says why."""


class TemplateConflict(ValueError):
    """Two routes' templates match the same paths with the same specificity and methods."""

    def __init__(self, first: int, second: int, message: str) -> None:
        super().__init__(message)
        self.first = first  # indexes into the sequence given to the tree
        self.second = second


class Param:
    """One parameter segment: its kind and, for a regex, the compiled pattern."""

    __slots__ = ("key", "kind", "pattern")

    def __init__(self, kind: int, pattern: str) -> None:
        self.kind = kind
        # Parameters of one kind and pattern share a tree node, whatever their names.
        self.key = f"{kind}:{pattern}"
        self.pattern: re.Pattern[str] | None = re.compile(pattern) if kind == REGEX else None

    def accepts(self, segment: str) -> bool:
        if not segment:
            return False
        kind = self.kind
        if kind == INT:
            return segment.isdigit() and segment.isascii()
        if kind == ANY:
            return True
        pattern = self.pattern
        return pattern is not None and pattern.fullmatch(segment) is not None


def is_template(path: str) -> bool:
    return "{" in path


class Template:
    """A route's compiled template: its segments, and where each named parameter sits."""

    __slots__ = ("depth", "names", "path", "positions", "segments", "static_path")

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            raise TemplateError("must start with '/'")
        self.path = path
        segments: list[str | Param] = []
        names: list[str] = []
        positions: list[int] = []
        for i, raw in enumerate(path.split("/")[1:]):
            if "{" not in raw and "}" not in raw:
                segments.append(raw)
                continue
            if not (raw.startswith("{") and raw.endswith("}")):
                raise TemplateError(f"segment '{raw}': a parameter must be a whole segment, like '{{name}}'")
            name, sep, spec = raw[1:-1].partition(":")
            if _NAME.fullmatch(name) is None:
                raise TemplateError(f"segment '{raw}': '{name}' is not a parameter name (letters, digits, '_')")
            if name in names:
                raise TemplateError(f"parameter '{name}' appears twice")
            if not sep:
                param = Param(ANY, "")
            elif spec == "int":
                param = Param(INT, "")
            elif not spec:
                raise TemplateError(f"segment '{raw}': empty pattern after ':'")
            else:
                try:
                    param = Param(REGEX, spec)
                except re.error as exc:
                    raise TemplateError(f"segment '{raw}': the pattern is not a valid regex: {exc}") from None
            segments.append(param)
            names.append(name)
            positions.append(i)
        self.segments: tuple[str | Param, ...] = tuple(segments)
        self.names: tuple[str, ...] = tuple(names)
        self.positions: tuple[int, ...] = tuple(positions)
        # Segments a prefix match consumes (a trailing slash adds none).
        self.depth = len(segments) - 1 if segments and segments[-1] == "" else len(segments)
        # The literal segments, parameters replaced by a placeholder that normalizes cleanly.
        self.static_path = "/" + "/".join(s if isinstance(s, str) else "p" for s in segments)

    def expand(self, params: dict[str, str]) -> str:
        """The path this template gives for ``params`` (building a URL to a template route,
        such as a signed download link). Raises ``TemplateError`` for a missing parameter or
        a value its segment would not match."""
        parts: list[str] = []
        names = iter(self.names)
        for seg in self.segments:
            if isinstance(seg, str):
                parts.append(seg)
                continue
            name = next(names)
            value = params.get(name)
            if value is None:
                raise TemplateError(f"parameter '{name}' is missing")
            if "/" in value or not seg.accepts(value):
                raise TemplateError(f"parameter '{name}' does not match its segment")
            parts.append(value)
        return "/" + "/".join(parts)

    def params(self, path: str) -> dict[str, str]:
        """The parameters of ``path``, which this template is known to match."""
        parts = path.split("/")
        return {name: parts[pos + 1] for name, pos in zip(self.names, self.positions, strict=True)}


class Node:
    """One level of the template tree."""

    __slots__ = ("exact", "params", "prefix", "static")

    def __init__(self) -> None:
        self.static: dict[str, Node] = {}
        # (parameter, child) in lookup order: int, regex (as written), plain.
        self.params: list[tuple[Param, Node]] = []
        # (value, methods, index of the item) of the templates ending here.
        self.exact: list[tuple[Any, frozenset[str], int]] = []
        self.prefix: list[tuple[Any, frozenset[str], int]] = []

    def child(self, segment: str | Param) -> Node:
        if isinstance(segment, str):
            node = self.static.get(segment)
            if node is None:
                node = self.static[segment] = Node()
            return node
        for param, node in self.params:
            if param.key == segment.key:
                return node
        node = Node()
        self.params.append((segment, node))
        self.params.sort(key=_param_order)
        return node


def _param_order(item: tuple[Param, Node]) -> int:
    return item[0].kind  # sort is stable: regexes keep the order they were written in


def _overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    return not a or not b or bool(a & b)


class TemplateTree:
    """Routes with templates, by segment. ``items`` are (template, match, methods, value)."""

    __slots__ = ("root",)

    def __init__(self, items: Sequence[tuple[Template, str, frozenset[str], Any]]) -> None:
        self.root = Node()
        for index, (template, match, methods, value) in enumerate(items):
            node = self.root
            segments = template.segments
            if match == "prefix" and segments and segments[-1] == "":
                segments = segments[:-1]
            for seg in segments:
                node = node.child(seg)
            bucket = node.exact if match == "exact" else node.prefix
            for _, other_methods, first in bucket:
                if _overlap(methods, other_methods):
                    raise TemplateConflict(
                        first, index,
                        f"'{template.path}' matches the same paths as '{items[first][0].path}' "
                        f"({match} match, methods {_methods(methods)} and {_methods(other_methods)})",
                    )
            bucket.append((value, methods, index))

    def find(self, path: str, method: str) -> Any:
        """The value of the most specific template matching ``path`` for ``method``, or None."""
        return _find(self.root, path.split("/"), 1, method)

    def methods(self, path: str) -> set[str] | None:
        """Methods of every template matching ``path`` (empty set: any), or None if none does."""
        found: set[str] = set()
        matched = _collect(self.root, path.split("/"), 1, found)
        return found if matched else None


def _methods(methods: frozenset[str]) -> str:
    return ",".join(sorted(methods)) if methods else "any"


def _pick(bucket: list[tuple[Any, frozenset[str], int]], method: str) -> Any:
    for value, methods, _ in bucket:
        if not methods or method in methods:
            return value
    return None


def _find(node: Node, parts: list[str], i: int, method: str) -> Any:
    if i == len(parts):
        found = _pick(node.exact, method)
        if found is None and node.prefix:
            found = _pick(node.prefix, method)
        return found
    segment = parts[i]
    child = node.static.get(segment)
    if child is not None:
        found = _find(child, parts, i + 1, method)
        if found is not None:
            return found
    for param, sub in node.params:
        if param.accepts(segment):
            found = _find(sub, parts, i + 1, method)
            if found is not None:
                return found
    return _pick(node.prefix, method) if node.prefix else None


def _collect(node: Node, parts: list[str], i: int, found: set[str]) -> bool:
    matched = False
    for _, methods, _ in node.prefix:
        matched = True
        found.update(methods)
    if i == len(parts):
        for _, methods, _ in node.exact:
            matched = True
            found.update(methods)
        return matched
    segment = parts[i]
    child = node.static.get(segment)
    if child is not None and _collect(child, parts, i + 1, found):
        matched = True
    for param, sub in node.params:
        if param.accepts(segment) and _collect(sub, parts, i + 1, found):
            matched = True
    return matched
