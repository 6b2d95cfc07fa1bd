"""The durable outbox: events are rows written in the same transaction as what they describe.

`emit()` takes party data (numbers, names) apart from the rest, so the publisher can leave it out
unless `mqtt.include_parties` is set. `seq` comes from the node's counter row, bumped with an
UPDATE first so concurrent writers on one node serialise on it (DESIGN §5).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tapeline.archive.ids import new_id
from tapeline.archive.models import EventCounter, OutboxEvent, utcnow
from tapeline.events.envelope import EventType, envelope


def next_seq(session: Session, node_id: str) -> int:
    """Reserve the node's next event sequence number in the caller's transaction."""
    bumped = session.execute(
        update(EventCounter).where(EventCounter.node_id == node_id).values(seq=EventCounter.seq + 1)
    )
    if bumped.rowcount == 0:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
        session.add(EventCounter(node_id=node_id, seq=1))
        session.flush()
        return 1
    return session.execute(
        select(EventCounter.seq).where(EventCounter.node_id == node_id)
    ).scalar_one()


def emit(
    session: Session,
    *,
    node_id: str,
    type_: EventType,
    data: dict[str, Any],
    parties: dict[str, Any] | None = None,
) -> OutboxEvent:
    """Queue an event in the caller's transaction."""
    row = OutboxEvent(
        event_id=new_id(),
        node_id=node_id,
        seq=next_seq(session, node_id),
        type=str(type_),
        ts=utcnow(),
        data=data,
        parties=parties or {},
        sent_at=None,
    )
    session.add(row)
    session.flush()
    return row


def as_envelope(row: OutboxEvent, *, include_parties: bool) -> dict[str, Any]:
    """The published form of an outbox row."""
    return envelope(
        event_id=row.event_id,
        ts=row.ts,
        node_id=row.node_id,
        seq=row.seq,
        type_=row.type,
        data=row.data,
        parties=row.parties if include_parties else None,
    )


def pending(session: Session, node_id: str, *, limit: int = 100) -> list[OutboxEvent]:
    """The node's unsent events, oldest first."""
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.node_id == node_id, OutboxEvent.sent_at.is_(None))
        .order_by(OutboxEvent.seq)
        .limit(limit)
    )
    return list(session.execute(query).scalars())
