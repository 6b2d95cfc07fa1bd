"""A review flag blocks disposition until resolved, and the resolution is itself a record."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.disposal import execute_due
from tapeline.archive.export import export_records
from tapeline.archive.exportcheck import verify_export
from tapeline.archive.models import AuditEntry, Interaction, StoredObject
from tapeline.archive.purge import approve_batch, dry_run, propose_batch
from tapeline.archive.reading import show
from tapeline.archive.records import Filters
from tapeline.archive.review import KIND, flag_for_review, open_flags, resolve_review
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.users import add_user
from tapeline.archive.verify import verify_archive
from tapeline.errors import AccessDenied, NotFound, TapelineError

OLD = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)  # finra-4511: expired in 2021
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RITA = Actor(name="rita", roles=("reviewer",))
SAM = Actor(name="sam", roles=("supervisor",), teams=("equities",))
AUD = Actor(name="aud", roles=("auditor",))
RMO = Actor(name="rmo", roles=("records-manager",))
REX = Actor(name="rex", roles=("records-manager",))
PARTY = "+447700900123"
EVE = Actor(name="eve", roles=("export-officer",))
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "interaction.schema.json").read_text()
)


def _call(archive: Archive, party: str = PARTY) -> str:
    return file_synthetic_call(archive, line="+442071230001", counterparty=party, started_at=OLD)


def _managers(archive: Archive) -> None:
    for name in ("rmo", "rex"):
        add_user(
            archive, name=name, roles=["records-manager"], teams=[],
            password="a long enough password 1", by=Actor.system("test"),
        )  # fmt: skip


def test_a_flag_blocks_disposition_until_resolved_by_a_filed_record(
    index_archive: Archive,
) -> None:
    flagged, other = _call(index_archive), _call(index_archive, "+447700900999")
    info = flag_for_review(index_archive, RITA, flagged, reason="possible front-running")
    assert info["review_flag"] == "rita: possible front-running"
    assert [i["id"] for i in dry_run(index_archive, RMO, now=NOW)] == [other]
    with index_archive.index.read() as session:
        seen = session.execute(
            select(AuditEntry).where(AuditEntry.action == "purge.dry_run")
        ).scalar_one()
    assert seen.details["flagged_kept"] == [flagged]  # kept back, and on record

    result = resolve_review(
        index_archive, RITA, flagged, action="no-further-action", comment="order was unsolicited"
    )
    res_id = result["resolution"]
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, flagged).review_flag is None
        res = session.get_one(Interaction, res_id)
        assert res.kind == KIND
        assert res.details["review_resolution"]["resolves"] == flagged
        assert res.counterparty_identifier == f"e164:{PARTY}"
        assert res.retention_class == "finra-4511"
        assert res.retain_until > NOW  # the evidence of review outlives the record it reviews
        history = session.get_one(Interaction, flagged).details["review"]
        assert history[-1]["resolution"] == res_id
        kinds = set(
            session.execute(
                select(StoredObject.kind).where(StoredObject.interaction_id == res_id)
            ).scalars()
        )
        assert kinds == {KIND, "manifest"}
        actions = [
            (e.action, e.actor)
            for e in session.execute(
                select(AuditEntry).where(AuditEntry.object_id.in_([flagged, res_id]))
            ).scalars()
        ]
    assert ("review.flagged", "rita") in actions
    assert ("review.resolved", "rita") in actions
    assert ("record.filed", "system:review") in actions
    record, _ = show(index_archive, RITA, res_id)
    assert record["kind"] == KIND
    assert sorted(i["id"] for i in dry_run(index_archive, RMO, now=NOW)) == sorted([flagged, other])
    assert verify_archive(index_archive).ok


def test_a_record_flagged_after_its_batch_was_proposed_is_refused_at_execution(
    index_archive: Archive,
) -> None:
    _managers(index_archive)
    rid = _call(index_archive)
    batch = propose_batch(index_archive, RMO, now=NOW)
    approve_batch(index_archive, REX, batch["id"], now=NOW)
    flag_for_review(index_archive, RITA, rid, reason="complaint received")
    execute_due(index_archive, now=NOW + timedelta(days=15))
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is None
        refused = session.execute(
            select(AuditEntry).where(
                AuditEntry.action == "purge.refused", AuditEntry.object_id == rid
            )
        ).scalar_one()
    assert refused.details["reason"] == "open review flag"


def test_who_may_flag_and_resolve(index_archive: Archive) -> None:
    rid = _call(index_archive)
    with pytest.raises(AccessDenied):
        flag_for_review(index_archive, AUD, rid, reason="x")
    with pytest.raises(NotFound):  # a supervisor of another team sees nothing
        flag_for_review(index_archive, SAM, rid, reason="x")
    with pytest.raises(TapelineError, match="no open review flag"):
        resolve_review(index_archive, RITA, rid, action="closed", comment="x")
    flag_for_review(index_archive, RITA, rid, reason="check")
    with pytest.raises(TapelineError, match="already flagged"):
        flag_for_review(index_archive, RITA, rid, reason="again")
    with pytest.raises(TapelineError, match="action and a comment"):
        resolve_review(index_archive, RITA, rid, action="closed", comment=" ")
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).review_flag is not None
        assert session.execute(select(Interaction).where(Interaction.kind == KIND)).first() is None


def test_the_resolution_body_names_reviewer_item_date_action_and_comment(
    index_archive: Archive,
) -> None:
    rid = _call(index_archive)
    flag_for_review(index_archive, RITA, rid, reason="check")
    res_id = resolve_review(index_archive, RITA, rid, action="escalated", comment="to CCO")[
        "resolution"
    ]
    with index_archive.index.read() as session:
        obj = session.execute(
            select(StoredObject).where(
                StoredObject.interaction_id == res_id, StoredObject.kind == KIND
            )
        ).scalar_one()
        assert obj.wrapped_key is not None
        data = index_archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)
    body = json.loads(data)
    assert body["reviewer"] == "rita"
    assert body["resolves"] == rid
    assert body["action"] == "escalated"
    assert body["comment"] == "to CCO"
    assert body["resolved_at"].endswith("Z")


def test_the_resolution_fits_the_record_schema_and_travels_in_a_party_export(
    index_archive: Archive, tmp_path: Path
) -> None:
    rid = _call(index_archive)
    flag_for_review(index_archive, RITA, rid, reason="check")
    res_id = resolve_review(index_archive, RITA, rid, action="closed", comment="fine")["resolution"]
    record, _ = show(index_archive, RITA, res_id)
    jsonschema.validate(record, SCHEMA)
    assert record["counterparty"]["identifier"] == PARTY
    path = tmp_path / "sar.zip"
    with path.open("wb") as handle:
        export_records(index_archive, EVE, Filters(party=PARTY, region="GB"), handle, purpose="SAR")
    report = verify_export(path, expected_key=public_key_text(index_archive.signing_key))
    assert report.ok, report.problems
    with zipfile.ZipFile(path) as bundle:
        ids = {r["id"] for r in json.loads(bundle.read("metadata.json"))}
    assert ids == {rid, res_id}


def test_the_resolution_is_filed_under_the_same_person_whatever_their_identifier(
    index_archive: Archive,
) -> None:
    rid = _call(index_archive, "anonymous")  # withheld caller ID: a raw identifier
    flag_for_review(index_archive, RITA, rid, reason="check")
    res_id = resolve_review(index_archive, RITA, rid, action="closed", comment="ok")["resolution"]
    with index_archive.index.read() as session:
        flagged = session.get_one(Interaction, rid)
        res = session.get_one(Interaction, res_id)
        assert res.counterparty_identifier == flagged.counterparty_identifier == "raw:anonymous"
        assert res.counterparty_id == flagged.counterparty_id


def test_the_review_queue_lists_open_flags_within_a_supervisors_teams(
    index_archive: Archive,
) -> None:
    rates = _call(index_archive)  # line +442071230001 belongs to the rates team
    other = file_synthetic_call(
        index_archive, line="+442071230002", counterparty=PARTY, started_at=OLD
    )
    flag_for_review(index_archive, RITA, rates, reason="a")
    flag_for_review(index_archive, RITA, other, reason="b")
    assert [r["id"] for r in open_flags(index_archive, RITA)] == sorted([rates, other])
    rates_sup = Actor(name="sue", roles=("supervisor",), teams=("rates",))
    assert [r["id"] for r in open_flags(index_archive, rates_sup)] == [rates]
    resolve_review(index_archive, rates_sup, rates, action="closed", comment="ok")
    assert [r["id"] for r in open_flags(index_archive, RITA)] == [other]
    with pytest.raises(AccessDenied):
        open_flags(index_archive, AUD)
