"""Scrub and signed checkpoints: a flipped byte alarms; a deleted or cut audit row is named."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import delete, update

from tapeline.archive.audit import HEAD_ID
from tapeline.archive.checkpoints import merkle_root, write_checkpoint
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditCheckpoint, AuditEntry, AuditHead, StoredObject
from tapeline.archive.nodes import active_alarms
from tapeline.archive.scrub import ALARM, scrub_slice, slice_size
from tapeline.archive.signing import canonical_json, verify
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.verify import VERIFY_ALARM, alarm_on_report, verify_archive
from tapeline.config import IntegrityConfig
from tapeline.events.outbox import pending
from tests.conftest import flip_a_byte

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)


def _calls(archive: Archive, n: int) -> list[str]:
    return [
        file_synthetic_call(
            archive, line="+442071230001", counterparty=f"+4477009001{i:02}", started_at=T0
        )
        for i in range(n)
    ]


def test_rfc6962_merkle_root_known_values() -> None:
    assert merkle_root([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 test vector: the one-leaf tree of the empty string is SHA-256(0x00)
    assert merkle_root([b""]) == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"c", b"b"])


def test_slice_size_covers_everything_within_the_interval() -> None:
    assert slice_size(0, tick_s=300, interval_days=30) == 1
    assert slice_size(8640, tick_s=300, interval_days=30) == 1
    assert slice_size(1_000_000, tick_s=300, interval_days=30) == 116


def test_scrub_cycles_through_every_object_and_alarms_on_a_flipped_byte(
    index_archive: Archive, request: pytest.FixtureRequest
) -> None:
    _calls(index_archive, 3)
    with index_archive.index.read() as session:
        objects = sorted(o.id for o in session.query(StoredObject))
    clean = [scrub_slice(index_archive, now=NOW, limit=2) for _ in range(4)]
    assert sum(r.checked for r in clean[:3]) == len(objects)
    assert any(r.cycle_done for r in clean)
    assert all(not r.problems for r in clean)
    flip_a_byte(index_archive, objects[1], request)
    index_archive.vault.store.delete(objects[2])
    found = scrub_slice(index_archive, now=NOW, limit=100)
    assert len(found.problems) == 2
    assert objects[1] in found.problems[0]
    assert objects[2] in found.problems[1]
    [alarm] = [a for a in active_alarms(index_archive) if a.code == ALARM]
    assert alarm.severity == "critical"
    with index_archive.index.read() as session:
        actions = {e.action for e in session.query(AuditEntry)}
    assert {"integrity.problem", "integrity.scrubbed"} <= actions


def test_a_deleted_audit_row_is_named(index_archive: Archive) -> None:
    _calls(index_archive, 3)
    with index_archive.index.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    report = verify_archive(index_archive)
    assert report.problems[0] == "audit entry 2 is missing"


def test_a_cut_chain_is_caught_by_checkpoints_in_the_index_and_off_the_box(
    index_archive: Archive, tmp_path: Path
) -> None:
    target = tmp_path / "checkpoints.jsonl"
    config = index_archive.config
    integrity = config.integrity.model_copy(update={"checkpoint_target": f"file:{target}"})
    index_archive.config = config.model_copy(update={"integrity": integrity})
    _calls(index_archive, 2)
    first = write_checkpoint(index_archive, now=NOW)
    assert first is not None
    assert write_checkpoint(index_archive, now=NOW) is None  # nothing new
    _calls(index_archive, 2)
    second = write_checkpoint(index_archive, now=NOW)
    assert second is not None
    assert second["seq_from"] == first["seq_to"] + 1
    assert len(target.read_text().splitlines()) == 2
    assert verify_archive(index_archive).ok
    # cut the newest two entries and rewind the head: the chain alone still links
    with index_archive.index.write() as session:
        keep = second["seq_to"] - 2
        last = session.get_one(AuditEntry, keep)
        session.execute(delete(AuditEntry).where(AuditEntry.seq > keep))
        session.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=keep, hash=last.hash)
        )
    problems = verify_archive(index_archive).problems
    assert any("covered by checkpoint 2 are missing" in p for p in problems), problems
    # and cut the checkpoint rows too: the copy off the index still names it
    with index_archive.index.write() as session:
        session.execute(delete(AuditCheckpoint))
    problems = verify_archive(index_archive).problems
    assert any("line 2: missing from the index" in p for p in problems), problems
    assert any("covered by checkpoint in" in p for p in problems), problems
    assert json.loads(target.read_text().splitlines()[1])["seq_to"] == second["seq_to"]


def test_scrub_alarm_clears_only_after_a_whole_clean_cycle(
    index_archive: Archive, request: pytest.FixtureRequest
) -> None:
    archive = index_archive
    _calls(archive, 2)
    with archive.index.read() as session:
        objects = sorted(o.id for o in session.query(StoredObject))
    path = archive.vault.store.path_of(objects[0])  # type: ignore[attr-defined]  # local store
    original = path.read_bytes()
    flip_a_byte(archive, objects[0], request)
    assert scrub_slice(archive, now=NOW, limit=100).problems
    assert [a.code for a in active_alarms(archive)] == [ALARM]
    path.write_bytes(original)  # restored from a backup
    first = scrub_slice(archive, now=NOW, limit=1)  # a clean slice is not a clean cycle
    assert not first.problems
    assert not first.cycle_done
    assert [a.code for a in active_alarms(archive)] == [ALARM]
    while not scrub_slice(archive, now=NOW, limit=1).cycle_done:
        pass
    assert active_alarms(archive) == []
    with archive.index.read() as session:
        rows = pending(session, archive.node_id, limit=1000)
        events = [(e.type, e.data["code"]) for e in rows if e.type.startswith("alarm.")]
    assert events == [("alarm.raised", ALARM), ("alarm.cleared", ALARM)]


def test_verify_raises_integrity_verify_and_a_clean_verify_clears_both(
    index_archive: Archive, request: pytest.FixtureRequest
) -> None:
    archive = index_archive
    _calls(archive, 1)
    with archive.index.read() as session:
        first = min(o.id for o in session.query(StoredObject))
    path = archive.vault.store.path_of(first)  # type: ignore[attr-defined]  # local store
    original = path.read_bytes()
    flip_a_byte(archive, first, request)
    scrub_slice(archive, now=NOW, limit=100)
    report = verify_archive(archive)
    assert alarm_on_report(archive, report) is True
    alarms = {a.code: a for a in active_alarms(archive)}
    assert set(alarms) == {ALARM, VERIFY_ALARM}
    assert alarms[VERIFY_ALARM].severity == "critical"
    assert first in alarms[VERIFY_ALARM].message
    path.write_bytes(original)
    assert alarm_on_report(archive, verify_archive(archive)) is False
    assert active_alarms(archive) == []


def test_checkpoints_go_to_a_remote_syslog_over_udp_signed(index_archive: Archive) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)  # a bound on a lost datagram, not a timing assertion
        port = collector.getsockname()[1]
        config = index_archive.config
        integrity = config.integrity.model_copy(
            update={"checkpoint_target": f"syslog://127.0.0.1:{port}"}
        )
        index_archive.config = config.model_copy(update={"integrity": integrity})
        _calls(index_archive, 2)
        sent = write_checkpoint(index_archive, now=NOW)
        datagram = collector.recv(65535).decode()
    assert sent is not None
    header, _, line = datagram.partition(" - checkpoint - ")
    assert header.startswith("<13>1 ")  # RFC 5424: user.notice, version 1
    assert header.endswith(" tapeline")  # APP-NAME; PROCID and MSGID follow
    copy = json.loads(line)
    assert copy == sent
    signature, key = copy.pop("signature"), copy.pop("public_key")
    assert verify(key, canonical_json(copy), signature)
    assert copy["seq_to"] >= copy["seq_from"]


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        ("syslog://logs.example.net:5514", True),
        ("syslog://[2001:db8::1]", True),
        ("syslog://", False),
        ("syslog://host:notaport", False),
        ("tcp://logs.example.net", False),
        ("file:relative", False),
    ],
)
def test_checkpoint_target_is_checked_at_config_load(target: str, *, ok: bool) -> None:
    if ok:
        assert IntegrityConfig(checkpoint_target=target).checkpoint_target == target
    else:
        with pytest.raises(ValidationError):
            IntegrityConfig(checkpoint_target=target)
