"""capture.loss and clock.offset: raised and cleared as events, shown in /readyz and in stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.daemon import health
from tapeline.daemon.alarmwatch import ALARM_CAPTURE_LOSS, ALARM_CLOCK_OFFSET, AlarmWatch
from tapeline.daemon.health import Health
from tapeline.daemon.recorder import Runtime
from tapeline.daemon.timesync import ClockReading
from tapeline.errors import StorageError
from tapeline.events.outbox import pending
from tapeline.events.stats import PublisherCounters, collect_stats, read_gauges

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
GOOD = ClockReading(source="test", offset_s=0.002, detail="test: +0.002 s")


def _watch(archive: Archive, reader: Any = lambda: GOOD, **alarms: Any) -> AlarmWatch:
    settings = archive.config.alarms.model_copy(update=alarms)
    config = archive.config.model_copy(update={"alarms": settings})
    return AlarmWatch(config, clock_reader=reader)


def _call(archive: Archive, *, lost: int, source: str = "siprec") -> None:
    file_synthetic_call(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=T0,
        source_path=source,
        quality={"expected": 1000, "received": 1000 - lost, "lost": lost},
    )


def _alarm_events(archive: Archive, code: str) -> list[str]:
    with archive.index.read() as session:
        rows = pending(session, archive.node_id, limit=1000)
        return [r.type for r in rows if r.data.get("code") == code]


def _stats(archive: Archive, runtime: Runtime) -> dict[str, float]:
    return collect_stats(
        archive,
        active_calls=0,
        counters=PublisherCounters(),
        gauges=read_gauges(runtime.gauges),
    )


async def test_capture_loss_over_a_sliding_window_raises_then_clears(
    index_archive: Archive,
) -> None:
    archive = index_archive
    watch = _watch(archive, capture_loss_percent=1.0, capture_loss_window=3)
    runtime = Runtime(archive=archive, active_calls={})
    await watch.start(runtime)  # checks once: nothing filed yet
    assert watch.loss_health() == ("pass", "no live call filed yet")
    for _ in range(3):
        _call(archive, lost=5)  # 0.5 %: under the threshold
    watch.check_once()
    assert watch.loss_health()[0] == "pass"
    _call(archive, lost=100)  # window (5 + 5 + 100) / 3000 = 3.67 %
    _call(archive, lost=400, source="synthetic")  # not captured by this node: ignored
    watch.check_once()
    watch.check_once()  # still above: no second raise
    [alarm] = [a for a in active_alarms(archive) if a.code == ALARM_CAPTURE_LOSS]
    assert alarm.severity == "major"
    assert "3.67% of packets lost over the last 3 calls" in alarm.message
    status, output = watch.loss_health()
    assert status == "warn"
    assert "above 1.0%" in output
    checks = Health(archive, extra=runtime.health_checks).checks(writes=False)
    assert checks["capture_loss"][0] == "warn"
    assert checks["alarms"][0] == "warn"
    assert ALARM_CAPTURE_LOSS in checks["alarms"][1]
    stats = _stats(archive, runtime)
    assert stats["alarm_capture_loss"] == 1
    assert stats["capture_loss_percent"] == round(110 / 30, 4)

    for _ in range(3):  # three clean calls push the bad one out of the window
        _call(archive, lost=0)
    watch.check_once()
    assert not [a for a in active_alarms(archive) if a.code == ALARM_CAPTURE_LOSS]
    assert watch.loss_health() == ("pass", "0.00% lost over the last 3 calls")
    assert _stats(archive, runtime)["alarm_capture_loss"] == 0
    assert _alarm_events(archive, ALARM_CAPTURE_LOSS) == ["alarm.raised", "alarm.cleared"]


async def test_clock_offset_of_two_seconds_raises_and_a_good_offset_clears(
    index_archive: Archive,
) -> None:
    archive = index_archive
    readings = [ClockReading(source="test", offset_s=-2.0, detail="test: -2.000 s")]
    watch = _watch(archive, reader=lambda: readings[-1], clock_offset_max_s=1.0)
    runtime = Runtime(archive=archive, active_calls={})
    await watch.start(runtime)
    [alarm] = [a for a in active_alarms(archive) if a.code == ALARM_CLOCK_OFFSET]
    assert alarm.message.startswith("clock offset -2.000 s exceeds 1.0 s")
    assert watch.clock_health()[0] == "warn"
    checks = Health(archive, extra=runtime.health_checks).checks(writes=False)
    assert checks["clock"][0] == "warn"
    stats = _stats(archive, runtime)
    assert stats["alarm_clock"] == 1
    assert stats["clock_offset_s"] == -2.0

    readings.append(GOOD)
    watch.check_once()
    assert not active_alarms(archive)
    assert watch.clock_health() == ("pass", "test: +0.002 s")
    assert _alarm_events(archive, ALARM_CLOCK_OFFSET) == ["alarm.raised", "alarm.cleared"]


async def test_an_unknown_offset_is_information_not_an_alarm(index_archive: Archive) -> None:
    archive = index_archive
    unknown = ClockReading(source="adjtimex", offset_s=None, detail="kernel clock not synchronised")
    watch = _watch(archive, reader=lambda: unknown)
    runtime = Runtime(archive=archive, active_calls={})
    await watch.start(runtime)
    watch.check_once()
    assert watch.clock_health() == ("pass", "offset unknown: kernel clock not synchronised")
    assert _alarm_events(archive, ALARM_CLOCK_OFFSET) == []
    stats = _stats(archive, runtime)
    assert "clock_offset_s" not in stats  # unknown is left out, never reported as 0
    assert stats["alarm_clock"] == 0
    report = Health(archive, extra=runtime.health_checks).report(writes=False, details=True)[1]
    assert report["checks"]["clock"][0]["status"] == "pass"
    assert report["status"] == "pass"


async def test_an_alarm_left_by_a_previous_run_is_cleared_when_the_condition_is_gone(
    index_archive: Archive,
) -> None:
    archive = index_archive
    bad = ClockReading(source="test", offset_s=5.0, detail="test: +5 s")
    first = _watch(archive, reader=lambda: bad)
    await first.start(Runtime(archive=archive, active_calls={}))
    assert [a.code for a in active_alarms(archive)] == [ALARM_CLOCK_OFFSET]
    restarted = _watch(archive)  # a new process: its latch knows nothing yet
    await restarted.start(Runtime(archive=archive, active_calls={}))
    assert active_alarms(archive) == []


def test_readyz_says_warn_not_crash_when_alarms_cannot_be_read(
    index_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Archive) -> list[object]:
        raise StorageError("index read failed: OperationalError: database is locked")

    monkeypatch.setattr(health, "node_alarms", broken)
    checks = Health(index_archive).checks(writes=False)
    assert checks["alarms"] == (
        "warn",
        "alarms unreadable: index read failed: OperationalError: database is locked",
    )
    assert checks["integrity"][0] == "warn"
