"""Confirming the time after a clock jump: who may, what is checked, what is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry
from tapeline.archive.nodes import raise_alarm
from tapeline.archive.trustedclock import CLOCK_ALARM, confirm_clock, is_suspended
from tapeline.errors import AccessDenied, TapelineError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RMO = Actor(name="rmo", roles=("records-manager",))


def _jump(archive: Archive) -> None:
    raise_alarm(archive, code=CLOCK_ALARM, severity="critical", message="jumped 86400 s ahead")


def test_a_stated_time_far_from_the_clock_is_refused_and_the_suspension_stays(
    index_archive: Archive,
) -> None:
    _jump(index_archive)
    with pytest.raises(TapelineError, match="set the clock right"):
        confirm_clock(index_archive, RMO, now=NOW, stated=NOW - timedelta(days=1))
    assert is_suspended(index_archive)
    info = confirm_clock(index_archive, RMO, now=NOW, stated=NOW - timedelta(seconds=30))
    assert info["confirmed_time"] == "2026-06-01T12:00:00.000Z"
    assert not is_suspended(index_archive)
    with index_archive.index.read() as session:
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "clock.confirmed")
        ).scalar_one()
    assert entry.details["stated_time"] == "2026-06-01T11:59:30.000Z"
    assert entry.object_id == index_archive.node_id


@pytest.mark.parametrize("role", ["legal", "reviewer", "auditor", "export-officer"])
def test_only_an_admin_or_records_manager_confirms(index_archive: Archive, role: str) -> None:
    _jump(index_archive)
    with pytest.raises(AccessDenied):
        confirm_clock(index_archive, Actor(name="x", roles=(role,)))
    assert is_suspended(index_archive)
