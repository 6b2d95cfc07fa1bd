"""The recorder's job runner: purges approved batches after grace; a clock jump suspends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.clock import ClockGuard
from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, RetentionClassRow
from tapeline.archive.nodes import active_alarms
from tapeline.archive.purge import approve_batch, propose_batch
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.users import add_user
from tapeline.daemon.jobs import JobsService
from tapeline.daemon.recorder import Runtime

OLD = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_clock_guard_trips_on_a_forward_jump_and_stays_tripped() -> None:
    guard = ClockGuard(max_jump_s=3600)
    assert guard.observe(NOW, 100.0)
    assert guard.observe(NOW + timedelta(seconds=60), 160.0)
    assert not guard.observe(NOW + timedelta(hours=3), 220.0)
    assert not guard.observe(NOW + timedelta(hours=3, seconds=60), 280.0)


async def test_jobs_seed_the_retention_classes_on_first_start(index_archive: Archive) -> None:
    jobs = JobsService(index_archive.config)
    await jobs.start(Runtime(archive=index_archive, active_calls={}))
    with index_archive.index.read() as session:
        names = set(session.execute(select(RetentionClassRow.name)).scalars())
    assert {"finra-4511", "mifid-ii", "selftest"} <= names


async def test_jobs_execute_after_grace_and_not_after_a_clock_jump(
    index_archive: Archive,
) -> None:
    for name in ("rmo", "rex"):
        add_user(
            index_archive,
            name=name,
            roles=["records-manager"],
            teams=[],
            password="a long enough password 1",
            by=Actor.system("test"),
        )
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=OLD
    )
    batch = propose_batch(index_archive, Actor(name="rmo", roles=("records-manager",)), now=NOW)
    approve_batch(
        index_archive, Actor(name="rex", roles=("records-manager",)), batch["id"], now=NOW
    )
    jobs = JobsService(index_archive.config)
    await jobs.start(Runtime(archive=index_archive, active_calls={}))
    assert jobs.tick(NOW + timedelta(days=1), 0.0).certificates == []
    jumped = jobs.tick(NOW + timedelta(days=15), 60.0)  # two weeks in one minute: a jump
    assert jumped.purge_suspended
    assert "clock.jump" in {a.code for a in active_alarms(index_archive)}
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is None
    honest = JobsService(index_archive.config)
    await honest.start(Runtime(archive=index_archive, active_calls={}))
    report = honest.tick(NOW + timedelta(days=15), 0.0)
    assert len(report.certificates) == 1
    assert report.scrubbed >= 1
    assert report.checkpoint is not None
    again = honest.tick(NOW + timedelta(days=15, seconds=60), 60.0)
    assert (again.scrubbed, again.checkpoint) == (0, None)  # neither is due yet
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is not None
