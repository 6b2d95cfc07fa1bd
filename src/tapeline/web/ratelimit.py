"""Login throttling: a sliding window per client address and per (address, account).

This complements the account lockout in `tapeline.archive.users` (5 consecutive failures lock
the account for 15 minutes): the window slows guessing across many accounts from one address,
which a per-account lockout cannot. It is kept in memory: a web node restart resets it, the
lockout (in the index) survives.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0
PER_ACCOUNT = 10
PER_ADDRESS = 30
_MAX_KEYS = 10_000


class LoginLimiter:
    """Counts login attempts; `allow()` says whether one more may be tried now."""

    def __init__(
        self,
        *,
        per_account: int = PER_ACCOUNT,
        per_address: int = PER_ADDRESS,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_account = per_account
        self._per_address = per_address
        self._window = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, address: str, account: str) -> bool:
        """Record an attempt and say whether it may go ahead."""
        now = self._clock()
        if len(self._hits) > _MAX_KEYS:  # bounded memory under a spray of addresses
            self._hits.clear()
        ok = True
        for key, limit in (
            (f"a|{address}", self._per_address),
            (f"u|{address}|{account}", self._per_account),
        ):
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            if len(hits) >= limit:
                ok = False
            else:
                hits.append(now)
        return ok
