"""How far the system clock is from its time source, read from what the box already runs.

Sources, best first: `chronyc tracking` (chrony's own estimate of the system clock's offset), then
the kernel's NTP state through `adjtimex(2)` (what ntpd and systemd-timesyncd steer: `offset`,
`maxerror`, `STA_UNSYNC`). chrony does not use the kernel PLL, so the kernel's `offset` reads 0
under chrony: that is why chronyc is asked first. When no source answers, or the kernel says it is
not synchronised, the offset is *unknown*: reported as such, never turned into an alarm, because
a box without a sync daemon is a configuration fact, not a measured offset.

`timedatectl show-timesync` is not read: it reports the last NTP packet, not an offset estimate,
and timesyncd's steering is already visible through adjtimex.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

CHRONYC_TIMEOUT_S: Final = 2.0
STA_UNSYNC: Final = 0x0040
STA_NANO: Final = 0x2000
TIME_ERROR: Final = 5
_US: Final = 1e-6
_NS: Final = 1e-9
_SYSTEM_TIME = re.compile(
    r"^System time\s*:\s*([0-9.]+) seconds (fast|slow) of NTP time", re.MULTILINE
)
_LEAP = re.compile(r"^Leap status\s*:\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockReading:
    """One look at the clock's sync state.

    Attributes:
        source: where the figure came from (`chronyc`, `adjtimex`, or `none`).
        offset_s: system clock minus true time in seconds (positive: fast); None when unknown.
        detail: one line for /readyz and the alarm message.
    """

    source: str
    offset_s: float | None
    detail: str


ClockReader = Callable[[], ClockReading]
UNKNOWN = ClockReading(source="none", offset_s=None, detail="no time sync source could be read")


def parse_chronyc_tracking(text: str) -> ClockReading:
    """Read `chronyc tracking` output (plain text form)."""
    leap = _LEAP.search(text)
    if leap is not None and leap.group(1).strip().lower() == "not synchronised":
        return ClockReading(source="chronyc", offset_s=None, detail="chrony: not synchronised")
    found = _SYSTEM_TIME.search(text)
    if found is None:
        return ClockReading(source="chronyc", offset_s=None, detail="chrony: no system time line")
    value = float(found.group(1))
    offset = value if found.group(2) == "fast" else -value
    return ClockReading(source="chronyc", offset_s=offset, detail=f"chrony: {offset:+.6f} s")


def read_chronyc() -> ClockReading | None:
    """Ask chronyd through `chronyc`; None when chronyc is absent or chronyd does not answer."""
    binary = shutil.which("chronyc")
    if binary is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [binary, "-n", "tracking"],
            capture_output=True,
            text=True,
            timeout=CHRONYC_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return parse_chronyc_tracking(done.stdout)


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class Timex(ctypes.Structure):
    """Linux `struct timex` (include/uapi/linux/timex.h), as glibc's `adjtimex` takes it."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


def reading_from_timex(state: int, timex: Timex) -> ClockReading:
    """Interpret what `adjtimex` returned (`state`) and filled in (`timex`)."""
    if state == TIME_ERROR or timex.status & STA_UNSYNC:
        return ClockReading(
            source="adjtimex", offset_s=None, detail="kernel clock not synchronised (STA_UNSYNC)"
        )
    unit = _NS if timex.status & STA_NANO else _US
    offset = timex.offset * unit
    maxerror = timex.maxerror * _US  # always microseconds
    return ClockReading(
        source="adjtimex",
        offset_s=offset,
        detail=f"kernel: offset {offset:+.6f} s, max error {maxerror:.6f} s",
    )


def read_adjtimex() -> ClockReading | None:
    """The kernel's NTP state (modes = 0: read only, no privilege needed); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    timex = Timex()
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    return reading_from_timex(state, timex)


def system_reader(source: str) -> ClockReader:
    """The reader for `alarms.clock_source` (`auto`, `chronyc`, `adjtimex`, `none`)."""
    order: list[Callable[[], ClockReading | None]] = []
    if source in {"auto", "chronyc"}:
        order.append(read_chronyc)
    if source in {"auto", "adjtimex"}:
        order.append(read_adjtimex)

    def read() -> ClockReading:
        unknown: ClockReading | None = None
        for reader in order:
            reading = reader()
            if reading is None:
                continue
            if reading.offset_s is not None:
                return reading
            unknown = unknown or reading  # keep the first explanation of why it is unknown
        return unknown or UNKNOWN

    return read
