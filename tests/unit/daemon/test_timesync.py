"""Reading the clock offset: chronyc's text, the kernel's timex, and the source order."""

from __future__ import annotations

import ctypes
import sys

import pytest

from tapeline.daemon import timesync
from tapeline.daemon.timesync import (
    STA_NANO,
    STA_UNSYNC,
    TIME_ERROR,
    UNKNOWN,
    ClockReading,
    Timex,
    parse_chronyc_tracking,
    read_adjtimex,
    reading_from_timex,
    system_reader,
)

CHRONY = """Reference ID    : C0A80001 (192.168.0.1)
Stratum         : 3
Ref time (UTC)  : Sat Nov 28 21:58:12 2026
System time     : {value} seconds {side} of NTP time
Last offset     : +0.000012345 seconds
RMS offset      : 0.000034567 seconds
Frequency       : 12.345 ppm slow
Leap status     : {leap}
"""


def test_chronyc_fast_is_positive_and_slow_is_negative() -> None:
    fast = parse_chronyc_tracking(CHRONY.format(value="2.000123000", side="fast", leap="Normal"))
    assert fast.offset_s == pytest.approx(2.000123)
    assert fast.source == "chronyc"
    slow = parse_chronyc_tracking(CHRONY.format(value="0.000500000", side="slow", leap="Normal"))
    assert slow.offset_s == pytest.approx(-0.0005)


def test_chronyc_not_synchronised_is_unknown() -> None:
    text = CHRONY.format(value="0.000000000", side="fast", leap="Not synchronised")
    reading = parse_chronyc_tracking(text)
    assert reading.offset_s is None
    assert "not synchronised" in reading.detail
    assert parse_chronyc_tracking("506 Cannot talk to daemon\n").offset_s is None


def test_timex_struct_matches_the_kernel_abi() -> None:
    # glibc's struct timex on 64-bit Linux is 208 bytes; a wrong layout would misread offsets.
    if ctypes.sizeof(ctypes.c_long) == 8:  # LP64
        assert ctypes.sizeof(Timex) == 208


def test_kernel_state_unsynchronised_is_unknown_and_units_follow_sta_nano() -> None:
    timex = Timex(status=STA_UNSYNC, offset=5_000_000, maxerror=16_000_000)
    assert reading_from_timex(TIME_ERROR, timex).offset_s is None
    assert reading_from_timex(0, timex).offset_s is None  # STA_UNSYNC alone says the same
    micro = reading_from_timex(0, Timex(status=0, offset=-1_500_000, maxerror=20_000))
    assert micro.offset_s == pytest.approx(-1.5)
    assert "max error 0.020000 s" in micro.detail
    nano = reading_from_timex(0, Timex(status=STA_NANO, offset=250_000_000))
    assert nano.offset_s == pytest.approx(0.25)


def test_the_real_kernel_answers_on_linux() -> None:
    reading = read_adjtimex()
    if sys.platform.startswith("linux"):
        assert reading is not None
        assert reading.source == "adjtimex"
    else:
        assert reading is None


def test_source_order_first_known_offset_wins_and_none_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chrony_unknown = ClockReading(
        source="chronyc", offset_s=None, detail="chrony: not synchronised"
    )
    kernel = ClockReading(source="adjtimex", offset_s=0.1, detail="kernel")
    monkeypatch.setattr(timesync, "read_chronyc", lambda: chrony_unknown)
    monkeypatch.setattr(timesync, "read_adjtimex", lambda: kernel)
    assert system_reader("auto")() == kernel
    assert system_reader("chronyc")() == chrony_unknown  # the reason it is unknown is kept
    assert system_reader("none")() == UNKNOWN
    monkeypatch.setattr(timesync, "read_chronyc", lambda: None)  # chronyc not installed
    monkeypatch.setattr(timesync, "read_adjtimex", lambda: None)  # not Linux
    assert system_reader("auto")() == UNKNOWN
