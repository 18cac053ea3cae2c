"""Lua scripts as the gateway sends them: source, SHA1 and the encoded commands.

Each feature keeps its ``.lua`` files beside the Python that uses them and composes its
scripts with ``compose``: Redis cannot include one script in another, so shared fragments
are concatenated ahead of the body. The SHA1 is computed once, so the hot path only ever
sends EVALSHA; NOSCRIPT is recovered by loading the source and repeating the call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hotpath.redis.resp import bulk, command


class LuaScript:
    __slots__ = ("evalsha_head", "load", "name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        # The first two items of every EVALSHA of this script, and its SCRIPT LOAD command.
        self.evalsha_head = bulk(b"EVALSHA") + bulk(self.sha.encode())
        self.load = command(b"SCRIPT", b"LOAD", source)


def compose(directory: Path, body: str, fragments: tuple[str, ...] = ()) -> LuaScript:
    """The script ``body`` (a file name in ``directory``) after its ``fragments``."""
    parts = [(directory / f).read_text(encoding="utf-8") for f in (*fragments, body)]
    return LuaScript(body.removesuffix(".lua"), "\n".join(parts))
