"""Legal holds: scopes over existing and future records, two-person release, several holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.holds import (
    approve_release,
    held_ids,
    list_holds,
    place_hold,
    request_release,
)
from tapeline.archive.models import AuditEntry, HeldRecord
from tapeline.archive.reading import show
from tapeline.archive.searches import save_search, scope_from
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.errors import AccessDenied, TapelineError

T0 = datetime(2020, 3, 2, 9, 30, tzinfo=UTC)
LENA = Actor(name="lena", roles=("legal",))
LEO = Actor(name="leo", roles=("legal",))
RITA = Actor(name="rita", roles=("reviewer",))
PARTY = "+447700900123"


def _held(archive: Archive, ids: list[str]) -> set[str]:
    with archive.index.read() as session:
        return held_ids(session, ids, region="GB")


def test_hold_by_party_covers_records_before_and_after_it_is_placed(
    index_archive: Archive,
) -> None:
    before = file_synthetic_call(
        index_archive, line="+442071230001", counterparty=PARTY, started_at=T0
    )
    other = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900999", started_at=T0
    )
    hold = place_hold(index_archive, LENA, matter="SEC v. Example", scope=scope_from(party=PARTY))
    assert hold["records"] == 1
    after = file_synthetic_message(
        index_archive, line="+442071230002", counterparty="07700 900123", started_at=T0, text="hi"
    )
    assert _held(index_archive, [before, other, after]) == {before, after}
    record, _ = show(index_archive, RITA, after)
    assert record["holds"] == [
        {"hold_id": hold["id"], "matter": "SEC v. Example", "state": "active"}
    ]
    assert show(index_archive, RITA, other)[0]["holds"] == []


def test_release_needs_a_reason_and_a_second_legal_account(index_archive: Archive) -> None:
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty=PARTY, started_at=T0
    )
    place_hold(index_archive, LENA, matter="M1", scope=scope_from(line="+442071230001"))
    with pytest.raises(AccessDenied):
        place_hold(index_archive, RITA, matter="M2", scope=scope_from(party=PARTY))
    with pytest.raises(TapelineError, match="needs a reason"):
        request_release(index_archive, LENA, matter="M1", reason=" ")
    request_release(index_archive, LENA, matter="M1", reason="matter settled")
    with pytest.raises(AccessDenied, match="cannot approve"):
        approve_release(index_archive, LENA, matter="M1")
    assert _held(index_archive, [rid]) == {rid}  # a requested release still holds
    with index_archive.index.read() as session:
        actions = [e.action for e in session.query(AuditEntry).order_by(AuditEntry.seq)]
    assert "hold.release_refused" in actions
    released = approve_release(index_archive, LEO, matter="M1")
    assert released["state"] == "released"
    assert released["released_by"] == "leo"
    assert _held(index_archive, [rid]) == set()


def test_a_record_under_two_holds_stays_held_until_the_last_release(
    index_archive: Archive,
) -> None:
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty=PARTY, started_at=T0
    )
    place_hold(index_archive, LENA, matter="A", scope=scope_from(party=PARTY))
    place_hold(index_archive, LENA, matter="B", scope=scope_from(team="rates"))
    request_release(index_archive, LENA, matter="A", reason="done")
    approve_release(index_archive, LEO, matter="A")
    assert _held(index_archive, [rid]) == {rid}
    request_release(index_archive, LEO, matter="B", reason="done")
    approve_release(index_archive, LENA, matter="B")
    assert _held(index_archive, [rid]) == set()
    assert [h["state"] for h in list_holds(index_archive)] == ["released", "released"]


def test_a_hold_on_a_saved_search_and_a_deleted_hold_row_still_holds(
    index_archive: Archive,
) -> None:
    save_search(index_archive, LENA, name="rates-2020", scope=scope_from(team="rates"))
    place_hold(index_archive, LENA, matter="S", scope={}, saved_search="rates-2020")
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty=PARTY, started_at=T0
    )
    not_rates = file_synthetic_call(
        index_archive, line="+442071230002", counterparty=PARTY, started_at=T0
    )
    with index_archive.index.write() as session:  # a forged index: the applied row is gone
        session.query(HeldRecord).delete()
    assert _held(index_archive, [rid, not_rates]) == {rid}
