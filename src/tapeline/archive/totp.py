"""TOTP second factor (RFC 6238 over RFC 4226 HOTP), from the standard library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

PERIOD_S = 30
DIGITS = 6
SECRET_BYTES = 20
_DYNAMIC_OFFSET_MASK = 0x0F
_TRUNCATE_MASK = 0x7FFFFFFF


def new_secret() -> bytes:
    """A fresh 160-bit shared secret."""
    return os.urandom(SECRET_BYTES)


def secret_base32(secret: bytes) -> str:
    """The secret as authenticator apps take it."""
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(secret: bytes, counter: int, *, digits: int = DIGITS) -> str:
    """RFC 4226 §5.3."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & _DYNAMIC_OFFSET_MASK
    (code,) = struct.unpack_from(">I", mac, offset)
    return str((code & _TRUNCATE_MASK) % 10**digits).zfill(digits)


def totp(secret: bytes, now: float, *, step: int = PERIOD_S) -> str:
    """RFC 6238 §4 at time `now` (Unix seconds)."""
    return hotp(secret, int(now // step))


def verify(secret: bytes, code: str, now: float, *, window: int = 1) -> bool:
    """Accept the code of this step or of `window` steps either side (clock drift)."""
    counter = int(now // PERIOD_S)
    return any(
        hmac.compare_digest(hotp(secret, counter + delta), code.strip())
        for delta in range(-window, window + 1)
    )
