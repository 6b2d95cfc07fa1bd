"""capture.no_audio: one alarm while any open session has had no RTP for the configured time."""

from __future__ import annotations

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.daemon.siprec.noaudio import ALARM_NO_AUDIO, NoAudioWatch
from tapeline.events.outbox import pending


def test_silence_is_judged_per_session_against_the_limit() -> None:
    watch = NoAudioWatch(limit_s=3.0)
    assert watch.evaluate([], now=100.0) is False  # first look: write the clear (stale alarm)
    watch.latch.active = False
    assert watch.evaluate([98.0, 99.5], now=100.0) is None  # both heard recently
    assert watch.evaluate([96.9, 99.5], now=100.0) is True  # one silent for 3.1 s
    assert (watch.silent, watch.open) == (1, 2)
    assert watch.health() == ("warn", "1 of 2 open calls without audio")
    watch.latch.active = True
    assert watch.evaluate([96.9, 99.5], now=100.0) is None  # still silent: nothing to write
    assert watch.evaluate([100.0, 99.5], now=100.0) is False  # audio arrived
    watch.latch.active = True
    assert watch.evaluate([], now=200.0) is False  # or the call ended
    assert watch.health() == ("pass", "0 open calls, none without audio for 3 s")


def test_raise_and_clear_write_alarm_events(index_archive: Archive) -> None:
    archive = index_archive
    watch = NoAudioWatch(limit_s=2.0)
    flip = watch.evaluate([10.0], now=13.0)
    assert flip is True
    watch.apply(archive, active=flip)
    [alarm] = active_alarms(archive)
    assert alarm.code == ALARM_NO_AUDIO
    assert alarm.message == "1 recorded call(s) have signalling but no audio for 2 s or more"
    flip = watch.evaluate([], now=14.0)
    assert flip is False
    watch.apply(archive, active=flip)
    assert active_alarms(archive) == []
    with archive.index.read() as session:
        events = [(e.type, e.data["code"]) for e in pending(session, archive.node_id)]
    assert events == [("alarm.raised", ALARM_NO_AUDIO), ("alarm.cleared", ALARM_NO_AUDIO)]
