"""Retention in the index: seeding, two-person changes, extensions only ever lengthen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry, Interaction
from tapeline.archive.policies import approve, extend, minimum_for, overview, propose
from tapeline.archive.purge import dry_run
from tapeline.archive.searches import save_search, scope_from
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.config import RetentionPolicyConfig
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
    assert _row(index_archive, now_in).retain_until == T0 + timedelta(days=2557)  # matched now
    assert _row(index_archive, later).retain_until == T0 + timedelta(days=2557)  # and later
    assert "saved search mifid-desk" in _row(index_archive, later).details["retention_trace"][-1]
    assert _row(index_archive, other).retain_until == T0 + timedelta(days=2192)


def test_a_filed_204_2_record_runs_from_the_configured_fiscal_year_end(
    index_archive: Archive,
) -> None:
    config = index_archive.config
    retention = config.retention.model_copy(
        update={
            "fiscal_year_end": "06-30",
            "policies": [
                RetentionPolicyConfig(
                    name="ria-desk", retention_class="advisers-204-2", line="+442071230001"
                )
            ],
        }
    )
    index_archive.config = config.model_copy(update={"retention": retention})
    made = datetime(2027, 8, 15, 10, 0, tzinfo=UTC)  # fiscal year 1 Jul 2027 - 30 Jun 2028
    ria = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=made
    )
    other = file_synthetic_call(
        index_archive, line="+442071230002", counterparty="+447700900123", started_at=made
    )
    year_end_plus_5 = datetime(2033, 6, 30, 23, 59, 59, 999000, tzinfo=UTC)
    row = _row(index_archive, ria)
    assert row.retention_class == "advisers-204-2"
    assert row.retain_until == year_end_plus_5
    assert any("ria-desk" in line for line in row.details["retention_trace"])
    assert "from fiscal year end" in row.details["retention_trace"][-1]
    assert _row(index_archive, other).retention_class == "finra-4511"
    with index_archive.index.read() as session:  # the executor's floor agrees with the filing
        assert minimum_for(session, row, "06-30") == year_end_plus_5
    assert ria not in [i["id"] for i in dry_run(index_archive, RMO, now=year_end_plus_5)]
    later = year_end_plus_5 + timedelta(seconds=1)
    assert ria in [i["id"] for i in dry_run(index_archive, RMO, now=later)]


def test_an_extension_stops_at_the_class_maximum_and_a_hold_is_the_way_beyond(
    index_archive: Archive,
) -> None:
    def call(party: str, cls: str | None) -> str:
        return file_synthetic_call(
            index_archive, line="+442071230001", counterparty=party, started_at=T0,
            retention_class=cls,
        )  # fmt: skip

    mifid, finra = call("+447700900123", "mifid-ii"), call("+447700900124", None)
    cap = T0 + timedelta(days=2557)  # mifid-ii: five years, at most seven
    save_search(index_archive, RMO, name="desk", scope=scope_from(line="+442071230001"))
    result = extend(index_archive, RMO, saved_search="desk", years=10, reason="litigation risk")
    assert result["capped"] == {mifid: "2031-03-03T09:30:00.000Z"}
    assert _row(index_archive, mifid).retain_until == cap
    assert _row(index_archive, finra).retain_until == T0.replace(year=2034)  # no maximum
    later = call("+447700900125", "mifid-ii")  # a later match is capped the same way
    assert _row(index_archive, later).retain_until == cap
    assert (
        "capped at the class maximum" in _row(index_archive, later).details["retention_trace"][-1]
    )
    with pytest.raises(TapelineError, match="a legal hold keeps one longer"):
        extend(index_archive, RMO, interaction_id=mifid, years=9, reason="again")
    assert _row(index_archive, mifid).retain_until == cap
