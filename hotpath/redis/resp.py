"""RESP2 on the wire: commands encoded as bytes, error replies, and Cluster hash slots.

Everything the gateway writes to Redis itself (rather than through coredis) is encoded
here, so one module knows the protocol: ``bulk`` and ``command`` build requests, replies
are parsed by hiredis in ``hotpath.redis.link``, ``ReplyError`` carries error replies, and
``hash_slot`` says which Cluster node a key lives on.
"""

from __future__ import annotations

import binascii
from typing import Final

from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import RedisClusterError

SLOTS: Final = 16384

# Error replies of a Redis that is up but cannot serve yet (loading its data, a script
# running too long, the cluster or its primary down): outages, not bad commands.
OUTAGE_REPLIES: Final = frozenset({"LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN"})
# Replies that mean "this node does not serve the slot now": it ran nothing.
REDIRECT_REPLIES: Final = frozenset({"MOVED", "ASK"})


class ReplyError(Exception):
    """An error reply from Redis (``NOSCRIPT ...``, ``MOVED ...``, ``ERR ...``)."""

    @property
    def code(self) -> str:
        message = str(self.args[0]) if self.args else ""
        return message.split(" ", 1)[0]


class LinkDown(ConnectionError):
    """A link could not connect, or its connection was lost with commands in flight."""


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*parts: bytes | str | int) -> bytes:
    """A whole RESP command, for payloads prepared once (handshakes, script loads, tests)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, int):
            out.append(bulk(b"%d" % part))
        elif isinstance(part, str):
            out.append(bulk(part.encode()))
        else:
            out.append(bulk(part))
    return b"".join(out)


# Small numbers as bulk strings, encoded once: counts and indexes in batched script calls.
_BULK_NUMBERS: Final = tuple(bulk(b"%d" % i) for i in range(2049))


def bulk_number(i: int) -> bytes:
    return _BULK_NUMBERS[i] if 0 <= i < len(_BULK_NUMBERS) else bulk(b"%d" % i)


def hash_slot(key: str) -> int:
    """Redis Cluster slot of a key: CRC16/XMODEM of its hash tag (or of the whole key)."""
    raw = key.encode("utf-8")
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % SLOTS


def is_outage(exc: BaseException) -> bool:
    """Errors that say Redis is unreachable or too slow, as opposed to a bad command."""
    if isinstance(exc, BaseExceptionGroup):
        return any(is_outage(e) for e in exc.exceptions)
    if isinstance(exc, ReplyError):
        return exc.code in OUTAGE_REPLIES
    # LinkDown is a ConnectionError, hence an OSError.
    return isinstance(exc, (TimeoutError, OSError, RedisConnectionError, RedisClusterError))
