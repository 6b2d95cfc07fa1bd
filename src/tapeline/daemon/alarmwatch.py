"""Periodic alarms that need no capture path: packet loss of recent calls and the clock offset.

Every `alarms.check_interval_s` the service pools the loss of the node's recent live calls and
reads the clock's sync state, raises or clears `capture.loss` and `clock.offset` (each an
`alarm.*` event through the outbox), and keeps the figures for `/readyz` and the `stats` topic.
The clock reader is injected, so a test can feed it any offset. An unknown offset (no sync
daemon, or not synchronised) is reported as such and never raises or clears the alarm: we cannot
tell either way.
"""

from __future__ import annotations

import asyncio
import logging

from tapeline.archive.core import Archive
from tapeline.archive.nodes import AlarmLatch
from tapeline.config import Config
from tapeline.daemon.captureloss import LossWindow, recent_loss
from tapeline.daemon.recorder import Runtime
from tapeline.daemon.timesync import ClockReader, ClockReading, system_reader
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
ALARM_CAPTURE_LOSS = "capture.loss"
ALARM_CLOCK_OFFSET = "clock.offset"
PASS, WARN = "pass", "warn"


class AlarmWatch:
    """The recorder service behind `capture.loss` and `clock.offset`."""

    name = "alarmwatch"

    def __init__(self, config: Config, *, clock_reader: ClockReader | None = None) -> None:
        self._config = config
        self._reader = clock_reader or system_reader(config.alarms.clock_source)
        self._archive: Archive | None = None
        self.loss_latch = AlarmLatch(ALARM_CAPTURE_LOSS, severity="major")
        self.clock_latch = AlarmLatch(ALARM_CLOCK_OFFSET, severity="major")
        self.loss: LossWindow | None = None
        self.clock: ClockReading | None = None

    # --- Service protocol -------------------------------------------------------------------

    async def start(self, runtime: Runtime) -> None:
        """Check once before READY and register the `/readyz` checks and `stats` figures."""
        self._archive = runtime.archive
        runtime.health_checks["capture_loss"] = self.loss_health
        runtime.health_checks["clock"] = self.clock_health
        runtime.gauges["capture_loss_percent"] = self._loss_percent
        runtime.gauges["clock_offset_s"] = self._clock_offset
        await asyncio.to_thread(self.check_once)

    async def run(self) -> None:
        """Check every `alarms.check_interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self._config.alarms.check_interval_s)
            try:
                await asyncio.to_thread(self.check_once)
            except StorageError:
                log.exception("alarm checks failed; retrying on the next interval")

    async def stop(self) -> None:
        """Nothing is left open between checks."""

    def reload(self, config: Config) -> None:
        """Thresholds are read at start; lines and trunks do not matter here."""
        del config

    # --- checks -----------------------------------------------------------------------------

    def check_once(self) -> None:
        """One round of both checks (blocking: the index and maybe a subprocess)."""
        archive = self._archive
        if archive is None:
            raise StorageError("alarm watch not started")
        self._check_loss(archive)
        self._check_clock(archive)

    def _check_loss(self, archive: Archive) -> None:
        cfg = self._config.alarms
        window = recent_loss(archive, calls=cfg.capture_loss_window)
        self.loss = window
        percent = window.percent
        if percent is None:
            return  # no packet expected yet: nothing to judge
        above = percent > cfg.capture_loss_percent
        message = (
            f"{percent:.2f}% of packets lost over the last {window.calls} calls "
            f"(alarm above {cfg.capture_loss_percent}%)"
        )
        if self.loss_latch.set(archive, active=above, message=message):
            log.log(logging.WARNING if above else logging.INFO, "capture loss: %s", message)

    def _check_clock(self, archive: Archive) -> None:
        reading = self._reader()
        self.clock = reading
        if reading.offset_s is None:
            return
        limit = self._config.alarms.clock_offset_max_s
        above = abs(reading.offset_s) > limit
        message = f"clock offset {reading.offset_s:+.3f} s exceeds {limit} s ({reading.detail})"
        if self.clock_latch.set(archive, active=above, message=message):
            log.log(logging.WARNING if above else logging.INFO, "clock: %s", reading.detail)

    # --- /readyz and stats ------------------------------------------------------------------

    def loss_health(self) -> tuple[str, str]:
        """`warn` while the alarm is raised (recording goes on, but it sounds bad)."""
        window = self.loss
        percent = None if window is None else window.percent
        if window is None or percent is None:
            return PASS, "no live call filed yet"
        text = f"{percent:.2f}% lost over the last {window.calls} calls"
        limit = self._config.alarms.capture_loss_percent
        return (WARN, f"{text}, above {limit}%") if self.loss_latch.active else (PASS, text)

    def clock_health(self) -> tuple[str, str]:
        """`warn` above the tolerance (operations §5.3); an unknown offset is information only."""
        reading = self.clock
        if reading is None or reading.offset_s is None:
            why = "not read yet" if reading is None else reading.detail
            return PASS, f"offset unknown: {why}"
        if self.clock_latch.active:
            return WARN, f"{reading.detail}; above {self._config.alarms.clock_offset_max_s} s"
        return PASS, reading.detail

    def _loss_percent(self) -> float | None:
        percent = None if self.loss is None else self.loss.percent
        return None if percent is None else round(percent, 4)

    def _clock_offset(self) -> float | None:
        return None if self.clock is None else self.clock.offset_s
