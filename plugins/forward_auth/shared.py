"""Answers shared through Redis: one call per description fleet-wide, then every worker
and pod reads the answer.

Keys under ``<prefix>:v<version>:fauth`` (``SharedState.keys.feature("fauth")``), one hash
tag per description digest: ``{<digest>}:a`` holds the answer for the route's
``cache_ttl``, ``{<digest>}:c`` the claim of the caller that is asking the service (it
expires after the call's timeout, so a caller that died frees it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

_DIR: Final = Path(__file__).with_name("lua")

FOUND: Final = 1
CLAIMED: Final = 2
WAIT: Final = 0


class SharedAnswers:
    __slots__ = ("_base", "_claim", "_settle")

    def __init__(self, client: Any, base: str) -> None:
        self._base = base
        self._claim = client.register_script((_DIR / "claim.lua").read_text())
        self._settle = client.register_script((_DIR / "settle.lua").read_text())

    def _keys(self, digest: str) -> list[str]:
        tag = f"{self._base}:{{{digest}}}"
        return [f"{tag}:a", f"{tag}:c"]

    async def claim(self, digest: str, claim_ms: int) -> tuple[int, bytes | None]:
        """(FOUND, answer), (CLAIMED, None) or (WAIT, None)."""
        reply = await self._claim(keys=self._keys(digest), args=[claim_ms])
        state = int(reply[0])
        return state, (reply[1] if state == FOUND else None)

    async def settle(self, digest: str, blob: bytes, ttl_ms: int) -> None:
        """Store the answer (ttl 0: store nothing) and release the claim."""
        await self._settle(keys=self._keys(digest), args=[blob, ttl_ms])
