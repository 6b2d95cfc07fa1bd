"""Retention in the index: seeding, two-person changes, extensions only ever lengthen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry, Interaction
from tapeline.archive.policies import approve, extend, overview, propose
from tapeline.archive.searches import save_search, scope_from
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.errors import AccessDenied, TapelineError

T0 = datetime(2024, 3, 2, 9, 30, tzinfo=UTC)
RMO = Actor(name="rmo", roles=("records-manager",))
REX = Actor(name="rex", roles=("records-manager",))
LENA = Actor(name="lena", roles=("legal",))


def _row(archive: Archive, rid: str) -> Interaction:
    with archive.index.read() as session:
        return session.get_one(Interaction, rid)


def test_templates_seed_the_index_and_a_policy_needs_two_people(index_archive: Archive) -> None:
    before = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    assert _row(index_archive, before).retention_class == "finra-4511"
    listed = overview(index_archive)
    assert "mifid-ii" in {c["name"] for c in listed["classes"]}
    with pytest.raises(AccessDenied):
        propose(index_archive, LENA, kind="policy", payload={"name": "x"})
    proposal = propose(
        index_archive,
        RMO,
        kind="class",
        payload={"name": "desk-10y", "minimum_days": 3652, "rule": "house rule"},
    )
    with pytest.raises(AccessDenied, match="cannot approve"):
        approve(index_archive, RMO, proposal["id"])
    approve(index_archive, REX, proposal["id"])
    policy = propose(
        index_archive,
        REX,
        kind="policy",
        payload={"name": "rates", "class": "desk-10y", "match": {"team": "rates"}},
    )
    approve(index_archive, RMO, policy["id"])
    after = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    row = _row(index_archive, after)
    assert row.retention_class == "desk-10y"
    assert row.retain_until == T0 + timedelta(days=3652)
    assert any("policy rates" in line for line in row.details["retention_trace"])
    # applies only to records filed after approval
    assert _row(index_archive, before).retention_class == "finra-4511"
    with pytest.raises(TapelineError, match="maximum_days is below"):
        propose(
            index_archive,
            RMO,
            kind="class",
            payload={"name": "bad", "minimum_days": 10, "maximum_days": 5},
        )


def test_extension_lengthens_and_shortening_is_refused_and_audited(index_archive: Archive) -> None:
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    original = _row(index_archive, rid).retain_until
    extend(index_archive, RMO, interaction_id=rid, years=7, reason="FCA request")
    assert _row(index_archive, rid).retain_until == T0 + timedelta(days=2557)
    with pytest.raises(AccessDenied, match="never shortened"):
        extend(index_archive, REX, interaction_id=rid, until=original, reason="tidy up")
    assert _row(index_archive, rid).retain_until == T0 + timedelta(days=2557)
    with index_archive.index.read() as session:
        actions = {e.action for e in session.query(AuditEntry)}
    assert {"retention.extended", "retention.shorten_refused"} <= actions


def test_extension_on_a_saved_search_covers_later_records(index_archive: Archive) -> None:
    now_in = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=T0
    )
    save_search(index_archive, RMO, name="mifid-desk", scope=scope_from(team="rates"))
    result = extend(index_archive, RMO, saved_search="mifid-desk", years=7, reason="FCA 7y")
    assert list(result["records"]) == [now_in]
    later = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900999", started_at=T0
    )
    other = file_synthetic_call(
        index_archive, line="+442071230002", counterparty="+447700900999", started_at=T0
    )
    assert _row(index_archive, later).retain_until == T0 + timedelta(days=2557)
    assert _row(index_archive, other).retain_until == T0 + timedelta(days=2192)
