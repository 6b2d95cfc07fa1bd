"""The purge suspension after a clock jump, kept in the index, and its lifting by a person.

The recorder's `ClockGuard` notices a forward jump, but it lives in memory: a restarted recorder
would trust the jumped clock again. So the suspension is the open `clock.jump` alarm of the
node in the index. While it is open the executor deletes nothing and no batch can be proposed
(their "now" would be the untrusted clock). Only an admin or a records manager lifts it, by
confirming the current time (`tapeline clock confirm` or the web page): the alarm is cleared and
the confirmation, with the time the confirmer saw, is chained into the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, require
from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm, utcnow
from tapeline.archive.records import iso
from tapeline.errors import TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit

CLOCK_ALARM = "clock.jump"


def _open_alarm(session: Session, node_id: str) -> Alarm | None:
    return session.execute(
        select(Alarm).where(
            Alarm.node_id == node_id, Alarm.code == CLOCK_ALARM, Alarm.cleared_at.is_(None)
        )
    ).scalar_one_or_none()


def purge_suspended(session: Session, node_id: str) -> bool:
    """Whether a clock jump on this node suspends purging until someone confirms the time."""
    return _open_alarm(session, node_id) is not None


def is_suspended(archive: Archive) -> bool:
    """`purge_suspended` for this archive's node, in its own read."""
    with archive.index.read() as session:
        return purge_suspended(session, archive.node_id)


def confirm_clock(
    archive: Archive,
    actor: audit.Actor,
    *,
    now: datetime | None = None,
    stated: datetime | None = None,
) -> dict[str, Any]:
    """Confirm the current time after a jump, lifting the purge suspension; audited.

    `stated` is the time the confirmer read from an independent source (a phone, a reference
    clock); when given, the system clock must agree with it within `retention.max_clock_jump_s`,
    so a clock still set wrong cannot be confirmed by mistake.

    Raises:
        AccessDenied: not an admin or records manager.
        TapelineError: purging is not suspended, or the stated time disagrees with the clock.
    """
    require(actor, Action.CONFIRM_CLOCK)
    moment = now or utcnow()
    if stated is not None:
        off = abs((moment - stated).total_seconds())
        if off > archive.config.retention.max_clock_jump_s:
            raise TapelineError(
                f"the system clock ({iso(moment)}) is {off:.0f} s away from the time you stated "
                f"({iso(stated)}); set the clock right before confirming it"
            )
    with archive.index.write() as session:
        alarm = _open_alarm(session, archive.node_id)
        if alarm is None:
            raise TapelineError(f"purging is not suspended on node {archive.node_id}")
        alarm.cleared_at = moment
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="clock.confirmed",
            object_type="node",
            object_id=archive.node_id,
            details={
                "confirmed_time": iso(moment),
                "stated_time": iso(stated),
                "alarm": alarm.message,
                "alarm_raised_at": iso(alarm.raised_at),
            },
        )
        emit(
            session,
            node_id=archive.node_id,
            type_=EventType.ALARM_CLEARED,
            data={"code": CLOCK_ALARM},
        )
        return {
            "node_id": archive.node_id,
            "confirmed_time": iso(moment),
            "alarm": alarm.message,
        }
