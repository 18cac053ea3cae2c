"""The shared breaker's Lua script, read from ``breaker.lua`` beside this module.

A module of its own, never compiled: a compiled module's ``__file__`` is the build's, where
no ``.lua`` file lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

BREAKER: Final = Path(__file__).with_name("breaker.lua").read_text(encoding="utf-8")
