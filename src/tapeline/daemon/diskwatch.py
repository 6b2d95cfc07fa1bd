"""Disk usage alarms: 80/90/95% of the object and spool filesystems, raised and cleared as events.

A full disk never deletes recordings (DESIGN §5): it raises these alarms, and the capture paths
refuse new work below `storage.min_free_bytes`. The check is a plain function of the usage figures
(`evaluate`), so thresholds test without filling a disk; the service only calls it on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tapeline.archive.core import Archive
from tapeline.archive.nodes import clear_alarm, raise_alarm
from tapeline.config import Config
from tapeline.daemon.recorder import Runtime

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 30.0
# (percent used, severity), highest first: only the highest crossed level is active at a time.
LEVELS: tuple[tuple[int, str], ...] = (
    (95, "critical"),
    (90, "major"),
    (80, "warning"),
)  # the event schema has no "minor"
Usage = Callable[[Path], tuple[int, int]]  # (total bytes, used bytes)


def disk_usage(path: Path) -> tuple[int, int]:
    """Total and used bytes of the filesystem holding `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return usage.total, usage.used


@dataclass(frozen=True, slots=True)
class DiskLevel:
    """Which alarm level a folder is at (None: below every level)."""

    folder: str
    percent: float
    level: int | None


def evaluate(folder: str, total: int, used: int) -> DiskLevel:
    """The highest level `used/total` crosses."""
    percent = 100.0 * used / total if total else 100.0
    level = next((lvl for lvl, _ in LEVELS if percent >= lvl), None)
    return DiskLevel(folder=folder, percent=percent, level=level)


def apply(archive: Archive, state: DiskLevel) -> None:
    """Raise the alarm of the crossed level and clear the others (blocking)."""
    for level, severity in LEVELS:
        code = f"disk.{state.folder}.{level}"
        if state.level == level:
            message = f"{state.folder} filesystem {state.percent:.1f}% used (alarm at {level}%)"
            if raise_alarm(archive, code=code, severity=severity, message=message):
                log.warning("disk alarm raised", extra={"code": code, "percent": state.percent})
        elif clear_alarm(archive, code=code):
            log.info("disk alarm cleared", extra={"code": code})


def check_once(archive: Archive, usage: Usage = disk_usage) -> list[DiskLevel]:
    """Check the object store and the spool once."""
    storage = archive.config.storage
    states = []
    for name, path in (("objects", storage.path), ("spool", storage.spool)):
        total, used = usage(path)
        state = evaluate(name, total, used)
        apply(archive, state)
        states.append(state)
    return states


class DiskWatch:
    """The recorder service that runs `check_once` every `CHECK_INTERVAL_S`."""

    name = "diskwatch"

    def __init__(self, config: Config, *, usage: Usage = disk_usage) -> None:
        self._config = config
        self._usage = usage
        self._archive: Archive | None = None

    async def start(self, runtime: Runtime) -> None:
        """Check once before READY, so a full disk is alarmed at start."""
        self._archive = runtime.archive
        await asyncio.to_thread(check_once, runtime.archive, self._usage)

    async def run(self) -> None:
        """Check on a timer until cancelled."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            if self._archive is not None:
                await asyncio.to_thread(check_once, self._archive, self._usage)

    async def stop(self) -> None:
        """Nothing to finish."""

    def reload(self, config: Config) -> None:
        """Paths do not change on reload."""
        self._config = config
