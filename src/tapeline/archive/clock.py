"""A guard against a wall clock moved forward: purging must not trust a clock root can set.

The recorder feeds it the wall clock and a monotonic clock on each job tick. If the wall clock
advanced more than `max_jump_s` beyond what the monotonic clock says really elapsed, the guard
trips and stays tripped (C-47): purge and expiry are suspended until an admin or records manager
confirms the time (`tapeline clock confirm`, `archive.trustedclock`), which the jobs service
sees in the index and answers with `reset`. Pure code: both times are arguments.
"""

from __future__ import annotations

from datetime import datetime


class ClockGuard:
    """Trips on a forward jump of the wall clock relative to a monotonic clock."""

    def __init__(self, *, max_jump_s: float) -> None:
        self._max_jump_s = max_jump_s
        self._last: tuple[datetime, float] | None = None
        self.tripped_by: float | None = None

    @property
    def trusted(self) -> bool:
        """Whether purging may trust the wall clock."""
        return self.tripped_by is None

    def observe(self, wall: datetime, monotonic: float) -> bool:
        """Record one reading; returns whether the clock is (still) trusted."""
        if self._last is not None and self.tripped_by is None:
            last_wall, last_mono = self._last
            jump = (wall - last_wall).total_seconds() - (monotonic - last_mono)
            if jump > self._max_jump_s:
                self.tripped_by = jump
        self._last = (wall, monotonic)
        return self.trusted

    def reset(self) -> None:
        """Trust the wall clock again from the next reading on (after a confirmed time)."""
        self._last = None
        self.tripped_by = None
