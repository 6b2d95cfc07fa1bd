r"""X-Hub-Signature-256: HMAC-SHA256 over the raw body, with every configured app secret.

Meta signs the exact bytes it sends (with `\uXXXX` and `\/` escapes), so the check runs on the
raw request body, never on re-serialised JSON (reference whatsapp.md §3, vectors S1-S5). Several
secrets are allowed at once: one per subscribed app, and old plus new during a rotation.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

PREFIX = "sha256="
HEX_DIGEST_LENGTH = 64


class Verdict(StrEnum):
    """The outcome of a signature check: 200 path, 401 or 403."""

    VALID = "valid"
    MISSING = "missing"
    MISMATCH = "mismatch"


def parse_secrets(text: str) -> list[bytes]:
    """App secrets from a secrets file: one per line, blank lines and `#` comments skipped."""
    return [
        line.strip().encode()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def sign(body: bytes, secret: bytes) -> str:
    """The header value Meta would send for `body` (for tests and the load generator)."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check(body: bytes, header: str | None, secrets: list[bytes]) -> Verdict:
    """Check a signature header against every secret in constant time.

    Raises:
        ValueError: no secret is configured (never fail open).
    """
    if not secrets:
        raise ValueError("no app secret configured")
    value = (header or "").strip()
    if not value.lower().startswith(PREFIX):
        return Verdict.MISSING
    got = value[len(PREFIX) :].strip().lower()
    if not got:
        return Verdict.MISSING
    # Every secret is tried, so timing does not tell which one (or whether any) matched.
    matched = False
    for secret in secrets:
        want = hmac.new(secret, body, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(want.encode(), got.encode("ascii", "replace"))
    return Verdict.VALID if matched else Verdict.MISMATCH
