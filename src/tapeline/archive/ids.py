"""UUIDv7 identifiers (RFC 9562 §5.7): random, time-ordered, never derived from content."""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7000
_VARIANT_RFC = 0x8000


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = (rand >> 62) & 0x0FFF
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= (_VERSION_7 | rand_a) << 64
    value |= (_VARIANT_RFC << 48) | rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """A new record or object id as its canonical string."""
    return str(uuid7())
