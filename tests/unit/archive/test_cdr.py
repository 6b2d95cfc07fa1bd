"""CDR import and reconciliation: a call never recorded and a call recorded short are reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tapeline.archive.audit import Actor
from tapeline.archive.cdr import ALARM, import_cdrs, parse_cdrs, reconcile
from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, NewInteraction
from tapeline.archive.models import Interaction
from tapeline.archive.nodes import active_alarms
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.errors import TapelineError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RMO = Actor(name="rmo", roles=("records-manager",))
LINE = "+442071230001"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _row(start: datetime, seconds: int, other: str, call_id: str = "") -> str:
    end = start + timedelta(seconds=seconds)
    return f"{_iso(start)},{_iso(end)},{other},{LINE},{call_id},\n"


def test_parse_names_the_bad_row() -> None:
    good = "start,end,from,to,call_id,line\n" + _row(T0, 10, "+447700900001")
    [row] = parse_cdrs(good, lines={LINE})
    assert row["line"] == LINE
    with pytest.raises(TapelineError, match="CDR row 3: end is before start"):
        parse_cdrs(good + f"{_iso(T0)},{_iso(T0 - timedelta(1))},a,b,,\n", lines={LINE})
    with pytest.raises(TapelineError, match="lacks columns: call_id"):
        parse_cdrs("start,end,from,to,line\n", lines={LINE})


def test_missing_and_short_recordings_are_reported_and_alarmed(index_archive: Archive) -> None:
    by_id = file_synthetic_call(
        index_archive, line=LINE, counterparty="+447700900001", started_at=T0, seconds=10
    )
    with index_archive.index.write() as session:
        session.execute(
            update(Interaction).where(Interaction.id == by_id).values(sip_call_id="abc@pbx")
        )
    by_numbers = file_synthetic_call(
        index_archive,
        line=LINE,
        counterparty="+447700900002",
        started_at=T0 + timedelta(hours=1, seconds=1),
        seconds=30,
    )
    short = file_synthetic_call(
        index_archive,
        line=LINE,
        counterparty="+447700900003",
        started_at=T0 + timedelta(hours=2),
        seconds=20,
    )
    failure = Filer(index_archive).file(
        NewInteraction(
            channel="voice",
            kind="capture_failure",
            direction="inbound",
            started_at=T0 + timedelta(hours=4),
            ended_at=T0 + timedelta(hours=4, minutes=1),
            source_path="synthetic",
            line_number=LINE,
            counterparty="+447700900005",
            outcome="no media received",
        )
    )
    csv = "start,end,from,to,call_id,line\n" + "".join(
        [
            _row(T0 - timedelta(seconds=30), 10, "+449999999999", "abc@pbx"),  # by Call-ID
            _row(T0 + timedelta(hours=1), 30, "07700 900002"),  # by numbers, 1 s apart
            _row(T0 + timedelta(hours=2), 60, "+447700900003"),  # recorded 20 s of 60
            _row(T0 + timedelta(hours=3), 45, "+447700900004"),  # never recorded
            _row(T0 + timedelta(hours=4), 60, "+447700900005"),  # a capture failure
        ]
    )
    result = import_cdrs(index_archive, RMO, csv.encode())
    assert result.rows == 5
    report = reconcile(index_archive, RMO, T0.date())
    assert [m["from"] for m in report["missing"]] == ["+447700900004"]
    assert [(s["interaction_id"], s["cdr_ms"], s["recorded_ms"]) for s in report["short"]] == [
        (short, 60000, 20000)
    ]
    assert [f["interaction_id"] for f in report["failed"]] == [failure]
    assert [g["interaction_id"] for g in report["gaps"]] == [failure]
    assert report["lines"][LINE] == {"cdrs": 5, "recorded": 3, "missing": 2, "short": 1}
    assert ALARM in {a.code for a in active_alarms(index_archive)}
    del by_numbers
