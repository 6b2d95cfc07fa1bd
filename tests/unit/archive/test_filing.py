from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import soundfile

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import StoredObject
from tapeline.archive.reading import show
from tapeline.archive.records import Filters, search
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.verify import verify_archive
from tapeline.events.outbox import pending
from tests.conftest import flip_a_byte

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "docs" / "interaction.schema.json").read_text())
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
REVIEWER = Actor(name="rita", roles=("reviewer",))


def test_synthetic_call_is_filed_encrypted_indexed_and_playable(archive: Archive) -> None:
    rid = file_synthetic_call(
        archive, line="+442071230001", counterparty="020 7946 0000", started_at=T0, seconds=2.0
    )
    record, audio = show(archive, REVIEWER, rid, audio=True)
    jsonschema.validate(record, SCHEMA)
    assert record["line"] == {"number": "+442071230001", "owner": "Alice Trader", "team": "rates"}
    assert record["counterparty"]["identifier"] == "+442079460000"
    assert record["duration_ms"] == 2000
    assert record["retention_class"] == "finra-4511"
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000
    assert frames.shape == (16000, 2)
    assert record["recording"]["sha256"]
    # the stored object is not the FLAC: it is sealed
    stored = archive.vault.store.get(record["recording"]["object_id"])
    assert b"fLaC" not in stored


def test_message_and_call_share_a_counterparty_and_filters_match(archive: Archive) -> None:
    file_synthetic_call(archive, line="+442071230001", counterparty="+447700900123", started_at=T0)
    file_synthetic_message(
        archive,
        line="+442071230002",
        counterparty="07700 900123",
        started_at=T0.replace(hour=10),
        text="call me back",
        wamid="wamid.X1",
    )
    file_synthetic_call(archive, line="+442071230002", counterparty="+447700900999", started_at=T0)
    with archive.index.read() as session:
        person = search(session, Filters(party="+447700900123", region="GB"))
        assert {r["channel"] for r in person} == {"voice", "whatsapp"}
        assert len({r["counterparty"]["id"] for r in person}) == 1
        assert len(search(session, Filters(channel="whatsapp"))) == 1
        assert len(search(session, Filters(line="Bob Sales"))) == 2
        assert len(search(session, Filters(since=T0.replace(hour=10)))) == 1
        msg = search(session, Filters(channel="whatsapp"))[0]
    assert msg["message"]["text"] == "call me back"
    for record in person:
        jsonschema.validate(record, SCHEMA)


def test_selftest_records_are_hidden_by_default(archive: Archive) -> None:
    file_synthetic_call(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=T0,
        tags=["selftest"],
        retention_class="selftest",
    )
    with archive.index.read() as session:
        assert search(session, Filters()) == []
        hidden = search(session, Filters(include_hidden=True))
    assert hidden[0]["retention_class"] == "selftest"


def test_filing_queues_events_and_audits(archive: Archive) -> None:
    file_synthetic_call(archive, line="+442071230001", counterparty="+447700900123", started_at=T0)
    with archive.index.read() as session:
        events = pending(session, archive.node_id)
    assert [e.type for e in events] == ["recording.stored"]
    assert events[0].seq == 1
    assert "+447700900123" not in json.dumps(events[0].data)
    assert verify_archive(archive).ok


def test_verify_names_a_flipped_byte(archive: Archive, request: pytest.FixtureRequest) -> None:
    rid = file_synthetic_call(
        archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    record, _ = show(archive, REVIEWER, rid)
    flip_a_byte(archive, record["recording"]["object_id"], request)
    report = verify_archive(archive)
    assert not report.ok
    assert report.problems[0].startswith(f"object {record['recording']['object_id']}")


def test_verify_names_a_deleted_audit_entry(archive: Archive) -> None:
    for minute in range(3):
        file_synthetic_call(
            archive,
            line="+442071230001",
            counterparty="+447700900123",
            started_at=T0.replace(minute=minute),
        )
    from sqlalchemy import delete  # noqa: PLC0415

    from tapeline.archive.models import AuditEntry  # noqa: PLC0415

    with archive.index.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    report = verify_archive(archive)
    assert report.problems[0] == "audit entry 2 is missing"


def test_failed_index_write_leaves_no_orphan_objects(archive: Archive) -> None:
    from tapeline.archive.filing import Filer, MessageIn, NewInteraction  # noqa: PLC0415
    from tapeline.errors import StorageError  # noqa: PLC0415

    file_synthetic_message(
        archive,
        line="+442071230001",
        counterparty="+447700900123",
        started_at=T0,
        text="one",
        wamid="wamid.DUP",
    )
    before = set(archive.vault.store.ids())
    with pytest.raises(StorageError):
        Filer(archive).file(
            NewInteraction(
                channel="whatsapp",
                kind="message",
                direction="inbound",
                started_at=T0,
                source_path="test",
                message=MessageIn(wamid="wamid.DUP", type="text", text="two"),
            )
        )
    assert set(archive.vault.store.ids()) == before
    with archive.index.read() as session:
        assert session.query(StoredObject).count() == len(before)
