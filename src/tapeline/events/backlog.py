"""Outbox bookkeeping for the publisher: mark rows sent, measure the backlog, enforce its bounds.

Strategy: the outbox is bounded by age (`mqtt.outbox_max_age`) and by rows (`mqtt.outbox_max_rows`).
Past either bound the oldest unsent rows of this node are deleted, and the drop is never silent:
the caller counts it, logs it at ERROR and raises an alarm (itself an event, so monitoring learns
of the gap, and `seq` shows where it is). Rows already sent are pruned after the same age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from tapeline.archive.core import Archive
from tapeline.archive.models import OutboxEvent, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """The unsent events of one node."""

    depth: int
    oldest: datetime | None

    def age_s(self, now: datetime) -> float:
        """Seconds the oldest unsent event has waited (0 when none)."""
        return 0.0 if self.oldest is None else max(0.0, (now - self.oldest).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """Unsent events deleted because the outbox passed a bound."""

    count: int
    first_seq: int | None = None
    last_seq: int | None = None


def mark_sent(archive: Archive, ids: list[int]) -> None:
    """Record that the broker acknowledged these rows."""
    if not ids:
        return
    with archive.index.write() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(sent_at=utcnow()))


def backlog(archive: Archive) -> Backlog:
    """How many events of this node wait, and since when."""
    with archive.index.read() as session:
        depth, oldest = session.execute(
            select(func.count(OutboxEvent.id), func.min(OutboxEvent.ts)).where(
                OutboxEvent.node_id == archive.node_id, OutboxEvent.sent_at.is_(None)
            )
        ).one()
    return Backlog(depth=int(depth), oldest=oldest)


def enforce_bounds(archive: Archive, *, max_age_s: float, max_rows: int) -> Dropped:
    """Delete unsent rows past the bounds (oldest first) and sent rows past the age bound."""
    node = archive.node_id
    cutoff = utcnow() - timedelta(seconds=max_age_s)
    unsent = (OutboxEvent.node_id == node, OutboxEvent.sent_at.is_(None))
    with archive.index.write() as session:
        session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.node_id == node,
                OutboxEvent.sent_at.is_not(None),
                OutboxEvent.ts < cutoff,
            )
        )
        depth = session.execute(select(func.count(OutboxEvent.id)).where(*unsent)).scalar_one()
        # The newest row allowed to go: everything older than the cut-off, and the excess rows.
        limit_seq: int | None = session.execute(
            select(func.max(OutboxEvent.seq)).where(*unsent, OutboxEvent.ts < cutoff)
        ).scalar_one()
        excess = depth - max_rows
        if excess > 0:
            excess_seq = session.execute(
                select(OutboxEvent.seq)
                .where(*unsent)
                .order_by(OutboxEvent.seq)
                .offset(excess - 1)
                .limit(1)
            ).scalar_one()
            limit_seq = max(limit_seq or 0, excess_seq)
        if limit_seq is None:
            return Dropped(count=0)
        doomed = (*unsent, OutboxEvent.seq <= limit_seq)
        count, first, last = session.execute(
            select(
                func.count(OutboxEvent.id), func.min(OutboxEvent.seq), func.max(OutboxEvent.seq)
            ).where(*doomed)
        ).one()
        session.execute(delete(OutboxEvent).where(*doomed))
    return Dropped(count=int(count), first_seq=first, last_seq=last)
