"""The background scrub: every object re-hashed within `integrity.scrub_interval_days` (C-11).

Each tick checks the next slice of objects in id order, sized so that a whole cycle fits the
interval; a mismatch or a missing object raises an integrity alarm (and its event) at once and is
audited, and each finished cycle is audited with its counts, so the results are kept. The alarm is
cleared only by a whole cycle without a problem: a bad object stays bad until it is restored or
purged, so a clean slice elsewhere proves nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.models import ScrubState, StoredObject
from tapeline.archive.nodes import clear_alarm, raise_alarm
from tapeline.archive.records import iso
from tapeline.archive.verify import SCRUB_ALARM, object_problem

STATE = "objects"
ALARM = SCRUB_ALARM
SECONDS_PER_DAY = 86400
ACTOR = audit.Actor.system("scrub")


@dataclass(slots=True)
class ScrubResult:
    """What one slice found."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    cycle_done: bool = False
    cycle_clean: bool = False


def slice_size(total: int, *, tick_s: float, interval_days: float) -> int:
    """Objects per tick so that all `total` are checked within the interval."""
    return max(1, math.ceil(total * tick_s / (interval_days * SECONDS_PER_DAY)))


def scrub_slice(archive: Archive, *, now: datetime, limit: int | None = None) -> ScrubResult:
    """Check the next slice of live objects; alarm and audit what is wrong."""
    result = ScrubResult()
    settings = archive.config.integrity
    with archive.index.read() as session:
        live = StoredObject.purged_at.is_(None)
        total = session.execute(
            select(func.count()).select_from(StoredObject).where(live)
        ).scalar_one()
        size = limit or slice_size(
            total, tick_s=settings.scrub_tick_s, interval_days=settings.scrub_interval_days
        )
        state = session.get(ScrubState, STATE)
        cursor = state.cursor if state else None
        query = select(StoredObject).where(live).order_by(StoredObject.id).limit(size)
        if cursor is not None:
            query = query.where(StoredObject.id > cursor)
        objects = list(session.execute(query).scalars())
        for obj in objects:
            result.checked += 1
            problem = object_problem(archive, obj)
            if problem is not None:
                result.problems.append(problem)
    result.cycle_done = len(objects) < size
    with archive.index.write() as session:
        state = session.get(ScrubState, STATE)
        if state is None:
            state = ScrubState(
                name=STATE, cursor=None, cycle_started_at=now, checked=0, problems=0,
                cycles_completed=0, last_cycle_at=None,
            )  # fmt: skip
            session.add(state)
        state.checked += result.checked
        state.problems += len(result.problems)
        state.cursor = objects[-1].id if objects and not result.cycle_done else None
        if result.problems:
            audit.append(
                session,
                node_id=archive.node_id,
                actor=ACTOR,
                action="integrity.problem",
                object_type="object",
                object_id=None,
                details={"problems": result.problems},
            )
        if result.cycle_done:
            result.cycle_clean = state.problems == 0
            audit.append(
                session,
                node_id=archive.node_id,
                actor=ACTOR,
                action="integrity.scrubbed",
                object_type="object",
                object_id=None,
                details={
                    "since": iso(state.cycle_started_at),
                    "checked": state.checked,
                    "problems": state.problems,
                },
            )
            state.cycles_completed += 1
            state.last_cycle_at = now
            state.cycle_started_at = now
            state.checked = 0
            state.problems = 0
    if result.cycle_clean:
        clear_alarm(archive, code=ALARM)
    if result.problems:
        raise_alarm(
            archive,
            code=ALARM,
            severity="critical",
            message=f"scrub: {result.problems[0]}"
            + (f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""),
        )
    return result
