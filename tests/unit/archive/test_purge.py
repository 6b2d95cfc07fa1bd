"""Disposition: dry run equals real run, holds block, two people, grace, certificate, re-checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.disposal import execute_due
from tapeline.archive.holds import approve_release, place_hold, request_release
from tapeline.archive.ids import new_id
from tapeline.archive.models import (
    AuditEntry,
    DestructionCertificate,
    Interaction,
    PurgeBatch,
    PurgeItem,
    StoredObject,
)
from tapeline.archive.purge import approve_batch, dry_run, propose_batch
from tapeline.archive.records import Filters, search
from tapeline.archive.searches import scope_from
from tapeline.archive.signing import canonical_json, verify
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.users import add_user
from tapeline.archive.verify import verify_archive
from tapeline.errors import AccessDenied, NotFound

OLD = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)  # finra-4511: kept until 2021
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GRACE_OVER = NOW + timedelta(days=14)
RMO = Actor(name="rmo", roles=("records-manager",))
REX = Actor(name="rex", roles=("records-manager",))
LENA = Actor(name="lena", roles=("legal",))
LEO = Actor(name="leo", roles=("legal",))
PARTY = "+447700900123"


def _accounts(archive: Archive) -> None:
    for name in ("rmo", "rex"):
        add_user(
            archive,
            name=name,
            roles=["records-manager"],
            teams=[],
            password="a long enough password 1",
            by=Actor.system("test"),
        )


def _call(archive: Archive, party: str = PARTY, started: datetime = OLD) -> str:
    return file_synthetic_call(
        archive, line="+442071230001", counterparty=party, started_at=started
    )


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(i["id"]) for i in items]


def test_dry_run_equals_real_run_and_the_certificate_lists_exactly_the_deleted(
    index_archive: Archive,
) -> None:
    _accounts(index_archive)
    expired = [
        _call(index_archive),
        _call(index_archive, "+447700900999"),
        file_synthetic_message(
            index_archive, line="+442071230002", counterparty=PARTY, started_at=OLD, text="x"
        ),
    ]
    fresh = _call(index_archive, started=NOW - timedelta(days=30))
    planned = dry_run(index_archive, RMO, now=NOW)
    assert sorted(_ids(planned)) == sorted(expired)
    batch = propose_batch(index_archive, RMO, now=NOW)
    assert sorted(_ids(batch["items"])) == sorted(expired)
    with pytest.raises(AccessDenied, match="cannot approve"):
        approve_batch(index_archive, RMO, batch["id"], now=NOW)
    approved = approve_batch(index_archive, REX, batch["id"], now=NOW)
    assert approved["not_before"] == "2026-06-15T12:00:00.000Z"
    assert execute_due(index_archive, now=NOW + timedelta(days=13)) == []  # grace period
    with index_archive.index.read() as session:
        doomed_objects = [
            (o.id, o.kind)
            for o in session.query(StoredObject).filter(StoredObject.interaction_id.in_(expired))
        ]
    [cert_id] = execute_due(index_archive, now=GRACE_OVER)
    with index_archive.index.read() as session:
        cert = session.get_one(DestructionCertificate, cert_id)
        assert sorted(r["id"] for r in cert.body["records"]) == sorted(expired)
        assert cert.body["approved_by"] == "rex"
        assert cert.body["proposed_by"] == "rmo"
        assert all(r["objects"] for r in cert.body["records"])
        assert verify(cert.public_key, canonical_json(cert.body), cert.signature)
        assert cert.retain_until >= GRACE_OVER + timedelta(days=6 * 365)
        assert search(session, Filters(include_hidden=True)) != []
        left = {r["id"] for r in search(session, Filters(include_hidden=True))}
        assert left == {fresh}
        for object_id, _kind in doomed_objects:
            obj = session.get_one(StoredObject, object_id)
            assert obj.wrapped_key is None
            assert obj.purged_at is not None
        tomb = session.get_one(Interaction, expired[0])
        assert tomb.purged_at is not None
        assert tomb.counterparty_identifier is None
    for object_id, _kind in doomed_objects:
        with pytest.raises(NotFound):
            index_archive.vault.store.get(object_id)
    assert verify_archive(index_archive).ok, verify_archive(index_archive).problems


def test_holds_before_and_after_arrival_block_purge_until_a_two_person_release(
    index_archive: Archive,
) -> None:
    _accounts(index_archive)
    before = _call(index_archive)
    place_hold(index_archive, LENA, matter="BGC", scope=scope_from(party=PARTY))
    after = _call(index_archive)
    free = _call(index_archive, "+447700900999")
    assert _ids(dry_run(index_archive, RMO, now=NOW)) == [free]
    batch = propose_batch(index_archive, RMO, now=NOW)
    with index_archive.index.read() as session:  # the skip is on record, not silent
        proposed = session.query(AuditEntry).filter(AuditEntry.action == "purge.proposed").one()
        assert proposed.details["held_kept"] == sorted([before, after])
    with index_archive.index.write() as session:  # a forged item: a held record in the batch
        for rid in (before, after):
            session.add(
                PurgeItem(
                    batch_id=batch["id"],
                    interaction_id=rid,
                    retention_class="finra-4511",
                    retain_until=OLD,
                    outcome=None,
                )
            )
    approve_batch(index_archive, REX, batch["id"], now=NOW)
    [cert_id] = execute_due(index_archive, now=GRACE_OVER)
    with index_archive.index.read() as session:
        cert = session.get_one(DestructionCertificate, cert_id)
        assert [r["id"] for r in cert.body["records"]] == [free]
        assert cert.body["refused"] == {before: "held", after: "held"}
        refusals = session.query(AuditEntry).filter(AuditEntry.action == "purge.refused").count()
        assert refusals == 2
        assert session.get_one(Interaction, before).purged_at is None
    request_release(index_archive, LENA, matter="BGC", reason="settled")
    with pytest.raises(AccessDenied):
        approve_release(index_archive, LENA, matter="BGC")
    assert dry_run(index_archive, RMO, now=GRACE_OVER) == []
    approve_release(index_archive, LEO, matter="BGC")
    assert sorted(_ids(dry_run(index_archive, RMO, now=GRACE_OVER))) == sorted([before, after])
    second = propose_batch(index_archive, REX, now=GRACE_OVER)
    approve_batch(index_archive, RMO, second["id"], now=GRACE_OVER)
    assert execute_due(index_archive, now=GRACE_OVER) == []  # released: back to the grace queue
    [cert_id] = execute_due(index_archive, now=GRACE_OVER + timedelta(days=14))
    with index_archive.index.read() as session:
        cert = session.get_one(DestructionCertificate, cert_id)
        assert sorted(r["id"] for r in cert.body["records"]) == sorted([before, after])


def test_forged_index_rows_cannot_shorten_retention(index_archive: Archive) -> None:
    _accounts(index_archive)
    young = _call(index_archive, started=NOW - timedelta(days=100))
    with index_archive.index.write() as session:  # forge: an early retain_until, a fake batch
        session.execute(update(Interaction).where(Interaction.id == young).values(retain_until=OLD))
        for approver in ("rmo", "rex"):
            batch_id = new_id()
            session.add(
                PurgeBatch(
                    id=batch_id,
                    state="approved",
                    selected_at=NOW,
                    proposed_by="rmo",
                    proposed_at=NOW,
                    approved_by=approver,
                    approved_at=NOW,
                    not_before=NOW,
                    executed_at=None,
                    certificate_id=None,
                )
            )
            session.flush()
            session.add(
                PurgeItem(
                    batch_id=batch_id,
                    interaction_id=young,
                    retention_class="finra-4511",
                    retain_until=OLD,
                    outcome=None,
                )
            )
    certs = execute_due(index_archive, now=NOW)
    with index_archive.index.read() as session:
        reasons = sorted(
            str(c.body["refused"][young])
            for c in session.query(DestructionCertificate).filter(
                DestructionCertificate.id.in_(certs)
            )
        )
        assert reasons[0].startswith("batch lacks two distinct people")
        assert reasons[1].startswith("class finra-4511 minimum runs until")
        assert session.get_one(Interaction, young).purged_at is None
    assert verify_archive(index_archive).ok
