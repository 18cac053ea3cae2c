"""The base of every configuration struct, and the value types several sections share.

Configuration is parsed into these msgspec structs once, by the control plane's loader, and
compiled into runtime objects; nothing on the request path reads a struct by field name.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Immutable, keyword-only, unknown keys rejected: a typo stops startup."""


# Durations in seconds, above zero and at most a day.
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
