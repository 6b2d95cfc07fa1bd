"""The recorder's job runner: purges after their grace period, the scrub, audit checkpoints.

Each tick runs in a worker thread (hashing and deleting block) under a lease row, so several
recorders never run the same job twice. The clock guard is fed the wall clock and the monotonic
clock on every tick; a forward jump suspends purging and raises an alarm, and the suspension
(the open alarm in the index, so a restart does not lift it) lasts until a person confirms the
time (`archive.trustedclock`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tapeline.archive.checkpoints import write_checkpoint
from tapeline.archive.clock import ClockGuard
from tapeline.archive.core import Archive
from tapeline.archive.disposal import execute_due
from tapeline.archive.models import utcnow
from tapeline.archive.nodes import raise_alarm, take_lease
from tapeline.archive.policies import seed
from tapeline.archive.scrub import scrub_slice
from tapeline.archive.trustedclock import CLOCK_ALARM, is_suspended
from tapeline.config import Config
from tapeline.daemon.recorder import Runtime
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
TICK_S = 60.0
LEASE_S = 600.0


@dataclass(slots=True)
class TickReport:
    """What one tick did."""

    certificates: list[str] = field(default_factory=list)
    purge_suspended: bool = False
    scrubbed: int = 0
    integrity_problems: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None


class JobsService:
    """Runs the archive's background jobs on a fixed tick."""

    name = "jobs"

    def __init__(self, config: Config, *, tick_s: float = TICK_S) -> None:
        self._config = config
        self._tick_s = tick_s
        self._archive: Archive | None = None
        self.guard = ClockGuard(max_jump_s=config.retention.max_clock_jump_s)
        self._jump_recorded = False
        self._last_run: dict[str, float] = {}

    def _due(self, job: str, monotonic: float, every_s: float) -> bool:
        last = self._last_run.get(job)
        if last is not None and monotonic - last < every_s:
            return False
        self._last_run[job] = monotonic
        return True

    async def start(self, runtime: Runtime) -> None:
        """Take the archive and, on the index's first start, load the retention templates."""
        self._archive = runtime.archive
        await asyncio.to_thread(seed, runtime.archive)

    async def run(self) -> None:
        """Tick until cancelled (the first tick waits one period: capture starts first)."""
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                await asyncio.to_thread(self.tick, utcnow(), time.monotonic())
            except StorageError:
                log.exception("job tick failed; retrying on the next tick")

    async def stop(self) -> None:
        """Nothing is left open between ticks."""

    def reload(self, config: Config) -> None:
        """Jobs do not depend on lines or trunks."""
        del config

    def tick(self, wall: datetime, monotonic: float) -> TickReport:
        """One round of jobs at `wall` (a trusted-clock seam: tests pass times in)."""
        archive = self._archive
        if archive is None:
            raise StorageError("jobs service not started")
        report = TickReport()
        if self._jump_recorded and not is_suspended(archive):
            # Someone confirmed the time (`tapeline clock confirm`): trust it from here on. Only
            # once the alarm is known to be in the index, or a failed write would lift the trip.
            self.guard.reset()
            self._jump_recorded = False
        if not self.guard.observe(wall, monotonic):
            report.purge_suspended = True
            raise_alarm(
                archive,
                code=CLOCK_ALARM,
                severity="critical",
                message=f"wall clock jumped {self.guard.tripped_by:.0f} s ahead; purge suspended",
            )
            self._jump_recorded = True
        elif is_suspended(archive):
            # A jump seen before a restart stays in force until a person confirms the time.
            report.purge_suspended = True
        elif take_lease(archive, "purge", seconds=LEASE_S):
            report.certificates = execute_due(archive, now=wall)
        integrity = self._config.integrity
        if self._due("scrub", monotonic, integrity.scrub_tick_s) and take_lease(
            archive, "scrub", seconds=LEASE_S
        ):
            found = scrub_slice(archive, now=wall)
            report.scrubbed, report.integrity_problems = found.checked, found.problems
        if self._due("checkpoint", monotonic, integrity.checkpoint_interval_s) and take_lease(
            archive, "checkpoint", seconds=LEASE_S
        ):
            report.checkpoint = write_checkpoint(archive, now=wall)
        return report
