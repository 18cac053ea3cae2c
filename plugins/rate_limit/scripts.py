"""The rate limiter's Lua scripts, read from ``lua/`` beside this module.

Each script is the prelude (``prelude.lua``: standard functions bound as locals), the two
algorithm fragments, then its body: ``decide.lua`` (a batch of decisions) or ``peek.lua``
(usage for the admin API, consuming nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from hotpath.redis.scripts import compose

_DIR: Final = Path(__file__).with_name("lua")
_FRAGMENTS: Final = ("prelude.lua", "sliding_window.lua", "token_bucket.lua")

DECIDE: Final = compose(_DIR, "decide.lua", _FRAGMENTS)
PEEK: Final = compose(_DIR, "peek.lua", _FRAGMENTS)
