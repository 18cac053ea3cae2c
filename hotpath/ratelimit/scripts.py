"""The Lua scripts, read from the ``.lua`` files beside this module.

Redis cannot include one script in another, so each script is the prelude (``prelude.lua``:
standard functions bound as locals), the algorithm fragments (``sliding_window.lua``,
``token_bucket.lua``), then its body. The SHA1 is computed
here once, so the hot path only ever sends EVALSHA; NOSCRIPT is recovered by the caller.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_DIR = Path(__file__).with_name("lua")
_FRAGMENTS = ("prelude.lua", "sliding_window.lua", "token_bucket.lua")


class LuaScript:
    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


def _compose(body: str) -> LuaScript:
    parts = [(_DIR / f).read_text(encoding="utf-8") for f in (*_FRAGMENTS, body)]
    return LuaScript(body.removesuffix(".lua"), "\n".join(parts))


DECIDE = _compose("decide.lua")
PEEK = _compose("peek.lua")
