from __future__ import annotations

from pathlib import Path

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.daemon.diskwatch import check_once, evaluate
from tapeline.events.outbox import pending

GIB = 1 << 30


def test_levels_pick_the_highest_crossed() -> None:
    assert evaluate("objects", 100 * GIB, 79 * GIB).level is None
    assert evaluate("objects", 100 * GIB, 80 * GIB).level == 80
    assert evaluate("objects", 100 * GIB, 93 * GIB).level == 90
    assert evaluate("objects", 100 * GIB, 99 * GIB).level == 95
    assert evaluate("objects", 0, 0).level == 95  # an unreadable size is treated as full


def test_alarms_follow_usage_up_and_down_with_events(archive: Archive) -> None:
    used = {"objects": 50, "spool": 50}

    def usage(path: Path) -> tuple[int, int]:
        name = "spool" if path == archive.config.storage.spool else "objects"
        return 100 * GIB, used[name] * GIB

    check_once(archive, usage)
    assert active_alarms(archive) == []
    used["objects"] = 91
    check_once(archive, usage)
    check_once(archive, usage)  # a repeat counts, it does not raise again
    alarms = active_alarms(archive)
    assert [(a.code, a.severity, a.count) for a in alarms] == [("disk.objects.90", "major", 2)]
    used["objects"] = 96
    check_once(archive, usage)
    assert [a.code for a in active_alarms(archive)] == ["disk.objects.95"]
    used["objects"] = 40
    check_once(archive, usage)
    assert active_alarms(archive) == []
    with archive.index.read() as session:
        types = [e.type for e in pending(session, archive.node_id)]
    assert types == ["alarm.raised", "alarm.raised", "alarm.cleared", "alarm.cleared"]
