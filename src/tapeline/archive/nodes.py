"""Node heartbeats, alarms and job leases: operational state that lives in the index (DESIGN §5)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tapeline import __version__
from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm, JobLease, NodeHeartbeat, utcnow
from tapeline.errors import StorageError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit


def heartbeat(archive: Archive, *, status: dict[str, Any], starting: bool = False) -> None:
    """Record that this node is alive (and what it is doing)."""
    now = utcnow()
    with archive.index.write() as session:
        row = session.get(NodeHeartbeat, archive.node_id)
        if row is None:
            session.add(
                NodeHeartbeat(
                    node_id=archive.node_id,
                    version=__version__,
                    started_at=now,
                    seen_at=now,
                    status=status,
                )
            )
            return
        row.seen_at = now
        row.status = status
        if starting:
            row.started_at = now
            row.version = __version__


def raise_alarm(archive: Archive, *, code: str, severity: str, message: str) -> bool:
    """Raise an alarm (or count a repeat of an active one); True when newly raised."""
    with archive.index.write() as session:
        active = _active(session, archive.node_id, code)
        if active is not None:
            active.count += 1
            return False
        session.add(
            Alarm(
                node_id=archive.node_id,
                code=code,
                severity=severity,
                message=message,
                raised_at=utcnow(),
                cleared_at=None,
                count=1,
            )
        )
        emit(
            session,
            node_id=archive.node_id,
            type_=EventType.ALARM_RAISED,
            data={"code": code, "severity": severity, "message": message},
        )
        return True


def clear_alarm(archive: Archive, *, code: str) -> bool:
    """Clear an active alarm; True when there was one."""
    with archive.index.write() as session:
        active = _active(session, archive.node_id, code)
        if active is None:
            return False
        active.cleared_at = utcnow()
        emit(session, node_id=archive.node_id, type_=EventType.ALARM_CLEARED, data={"code": code})
        return True


class AlarmLatch:
    """One alarm code driven by a periodic check: the index is written only when the state flips.

    The first `set` always writes, so an alarm left active by a previous run (a crash, a restart
    while a call was silent) is cleared when the condition is gone.
    """

    def __init__(self, code: str, *, severity: str) -> None:
        self.code = code
        self.severity = severity
        self.active: bool | None = None

    def set(self, archive: Archive, *, active: bool, message: str = "") -> bool:
        """Raise (with `message`) or clear the alarm; True when the state changed (blocking)."""
        if active == self.active:
            return False
        if active:
            raise_alarm(archive, code=self.code, severity=self.severity, message=message)
        else:
            clear_alarm(archive, code=self.code)
        self.active = active
        return True


def node_alarms(archive: Archive) -> list[Alarm]:
    """This node's uncleared alarms, oldest first."""
    with archive.index.read() as session:
        query = (
            select(Alarm)
            .where(Alarm.node_id == archive.node_id, Alarm.cleared_at.is_(None))
            .order_by(Alarm.raised_at)
        )
        return list(session.execute(query).scalars())


def active_alarms(archive: Archive) -> list[Alarm]:
    """Every uncleared alarm of every node."""
    with archive.index.read() as session:
        query = select(Alarm).where(Alarm.cleared_at.is_(None)).order_by(Alarm.raised_at)
        return list(session.execute(query).scalars())


def _active(session: Session, node_id: str, code: str) -> Alarm | None:
    return session.execute(
        select(Alarm).where(
            Alarm.node_id == node_id, Alarm.code == code, Alarm.cleared_at.is_(None)
        )
    ).scalar_one_or_none()


def take_lease(archive: Archive, name: str, *, seconds: float) -> bool:
    """Take or renew the lease on a job; False when another node holds it."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    try:
        with archive.index.write() as session:
            lease = session.get(JobLease, name)
            if lease is None:
                session.add(JobLease(name=name, holder=archive.node_id, expires_at=until))
                return True
            taken = session.execute(
                update(JobLease)
                .where(
                    JobLease.name == name,
                    (JobLease.holder == archive.node_id) | (JobLease.expires_at < now),
                )
                .values(holder=archive.node_id, expires_at=until)
            )
            return bool(taken.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE
    except StorageError as exc:
        # Two nodes took a job's very first lease at once (PostgreSQL lets both read "none"):
        # the primary key lets one row in; the other node simply does not hold the lease.
        if isinstance(exc.__cause__, IntegrityError):
            return False
        raise


def node_statuses(archive: Archive) -> list[NodeHeartbeat]:
    """Every recorder node's heartbeat row, by node id."""
    with archive.index.read() as session:
        return list(
            session.execute(select(NodeHeartbeat).order_by(NodeHeartbeat.node_id)).scalars()
        )


def recent_alarms(archive: Archive, *, limit: int = 50) -> list[Alarm]:
    """The newest alarms of every node, active or cleared."""
    with archive.index.read() as session:
        query = select(Alarm).order_by(Alarm.raised_at.desc()).limit(limit)
        return list(session.execute(query).scalars())
