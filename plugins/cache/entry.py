"""A stored response, and its wire form in Redis (MessagePack via msgspec)."""

from __future__ import annotations

import msgspec

from hotpath.context import Header


class Entry(msgspec.Struct, frozen=True, array_like=True):
    status: int
    # Client-bound headers as the upstream sent them (hop-by-hop and per-request headers
    # such as X-Request-ID removed).
    headers: tuple[Header, ...]
    body: bytes
    # Shared-clock seconds (Redis TIME based; see hub.SharedClock): when the upstream
    # request began (so an invalidation during the fetch invalidates it) and when it expires.
    stored_at: float
    expires_at: float
    # The request headers the entry varies on (sorted, lower case).
    vary: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Approximate memory cost, for the per-worker tier's byte budget."""
        return len(self.body) + sum(len(k) + len(v) + 64 for k, v in self.headers) + 256


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def encode(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode(blob: bytes) -> Entry | None:
    """None for a blob this version cannot read (e.g. written by an older layout)."""
    try:
        return _decoder.decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
