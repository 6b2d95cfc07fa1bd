"""The recorder's job runner: purges approved batches after grace; a clock jump suspends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.clock import ClockGuard
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry, Interaction, RetentionClassRow
from tapeline.archive.nodes import active_alarms
from tapeline.archive.purge import approve_batch, dry_run, propose_batch
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.archive.trustedclock import confirm_clock, is_suspended
from tapeline.archive.users import add_user
from tapeline.daemon.jobs import JobsService
from tapeline.daemon.recorder import Runtime
from tapeline.errors import AccessDenied, StorageError, TapelineError

OLD = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RMO = Actor(name="rmo", roles=("records-manager",))
REX = Actor(name="rex", roles=("records-manager",))


def test_clock_guard_trips_on_a_forward_jump_and_stays_tripped() -> None:
    guard = ClockGuard(max_jump_s=3600)
    assert guard.observe(NOW, 100.0)
    assert guard.observe(NOW + timedelta(seconds=60), 160.0)
    assert not guard.observe(NOW + timedelta(hours=3), 220.0)
    assert not guard.observe(NOW + timedelta(hours=3, seconds=60), 280.0)
    guard.reset()  # the time was confirmed: the next reading is the new baseline
    assert guard.observe(NOW + timedelta(hours=3, seconds=120), 340.0)
    assert guard.observe(NOW + timedelta(hours=3, seconds=180), 400.0)


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
    # A restarted recorder has a fresh guard, but the suspension is in the index.
    honest = JobsService(index_archive.config)
    await honest.start(Runtime(archive=index_archive, active_calls={}))
    still = honest.tick(NOW + timedelta(days=15), 0.0)
    assert still.purge_suspended
    assert still.certificates == []
    assert still.scrubbed >= 1  # the other jobs do not wait for the clock
    confirm_clock(index_archive, RMO, now=NOW + timedelta(days=15))
    report = honest.tick(NOW + timedelta(days=15), 0.0)
    assert not report.purge_suspended
    assert len(report.certificates) == 1
    again = honest.tick(NOW + timedelta(days=15, seconds=60), 60.0)
    assert (again.scrubbed, again.checkpoint) == (0, None)  # neither is due yet
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is not None


async def test_a_jump_suspends_purging_until_a_person_confirms_the_time(
    index_archive: Archive,
) -> None:
    for name in ("rmo", "rex", "ada"):
        add_user(
            index_archive, name=name, roles=["admin" if name == "ada" else "records-manager"],
            teams=[], password="a long enough password 1", by=Actor.system("test"),
        )  # fmt: skip
    rid = file_synthetic_call(
        index_archive, line="+442071230001", counterparty="+447700900123", started_at=OLD
    )
    batch = propose_batch(index_archive, RMO, now=NOW)
    approve_batch(index_archive, REX, batch["id"], now=NOW)
    jobs = JobsService(index_archive.config)
    await jobs.start(Runtime(archive=index_archive, active_calls={}))
    jobs.tick(NOW, 0.0)
    assert jobs.tick(NOW + timedelta(days=15), 60.0).purge_suspended  # a jump
    assert is_suspended(index_archive)
    # Suspended everywhere: the dry run lists nothing and no batch can be proposed.
    assert dry_run(index_archive, RMO, now=NOW + timedelta(days=15)) == []
    with pytest.raises(TapelineError, match="clock confirm"):
        propose_batch(index_archive, RMO, now=NOW + timedelta(days=15))
    with pytest.raises(AccessDenied):
        confirm_clock(index_archive, Actor(name="lena", roles=("legal",)))
    report = jobs.tick(NOW + timedelta(days=15, seconds=60), 120.0)  # honest minute, still off
    assert report.purge_suspended
    assert report.certificates == []
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is None

    confirm_clock(index_archive, Actor(name="ada", roles=("admin",)))
    assert not is_suspended(index_archive)
    with pytest.raises(TapelineError, match="not suspended"):
        confirm_clock(index_archive, RMO)
    resumed = jobs.tick(NOW + timedelta(days=15, seconds=120), 180.0)
    assert not resumed.purge_suspended
    assert len(resumed.certificates) == 1
    with index_archive.index.read() as session:
        assert session.get_one(Interaction, rid).purged_at is not None
        confirmed = session.execute(
            select(AuditEntry).where(AuditEntry.action == "clock.confirmed")
        ).scalar_one()
    assert confirmed.actor == "ada"
    assert "jumped" in confirmed.details["alarm"]
    assert "clock.jump" not in {a.code for a in active_alarms(index_archive)}


async def test_a_jump_whose_alarm_could_not_be_written_stays_tripped(
    index_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = JobsService(index_archive.config)
    await jobs.start(Runtime(archive=index_archive, active_calls={}))
    jobs.tick(NOW, 0.0)

    def index_down(*_args: object, **_kwargs: object) -> bool:
        raise StorageError("index unavailable")

    monkeypatch.setattr("tapeline.daemon.jobs.raise_alarm", index_down)
    with pytest.raises(StorageError):
        jobs.tick(NOW + timedelta(days=15), 60.0)  # a jump, and the alarm write fails
    monkeypatch.undo()
    # The index has no alarm, but the guard has not forgotten: the next tick suspends and alarms.
    assert jobs.tick(NOW + timedelta(days=15, seconds=60), 120.0).purge_suspended
    assert is_suspended(index_archive)
