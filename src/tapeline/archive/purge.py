"""Disposition, first half: what may go, batches, and two-person approval.

`expired_candidates` is the one selection: records whose `retain_until` is before the trusted
now, not held (by a recorded application or a live scope match), without an open review flag and
not purged yet. `dry_run` prints exactly it; `propose_batch` freezes it into a batch; a second
records manager approves, and the batch waits `retention.purge_grace_days` before the recorder
executes it (`archive.disposal`), re-checking everything first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, require
from tapeline.archive.core import Archive
from tapeline.archive.holds import held_ids
from tapeline.archive.ids import new_id
from tapeline.archive.models import Interaction, PurgeBatch, PurgeItem, utcnow
from tapeline.archive.records import iso
from tapeline.archive.trustedclock import purge_suspended
from tapeline.errors import AccessDenied, NotFound, TapelineError

PROPOSED = "proposed"
APPROVED = "approved"
EXECUTED = "executed"


def expired_candidates(session: Session, *, now: datetime, region: str) -> list[Interaction]:
    """Records a purge may take at `now`: expired, unheld, not under review, not purged."""
    return _selection(session, now=now, region=region).candidates


@dataclass(frozen=True, slots=True)
class _Selection:
    """The candidates, and the expired records kept back (audited, so no skip is silent)."""

    candidates: list[Interaction]
    held: list[str]
    flagged: list[str]

    def audit_details(self) -> dict[str, list[str]]:
        return {"held_kept": self.held, "flagged_kept": self.flagged}


def _selection(session: Session, *, now: datetime, region: str) -> _Selection:
    rows = list(
        session.execute(
            select(Interaction)
            .where(Interaction.retain_until < now, Interaction.purged_at.is_(None))
            .order_by(Interaction.started_at, Interaction.id)
        ).scalars()
    )
    flagged = [r.id for r in rows if r.review_flag is not None]
    rows = [r for r in rows if r.review_flag is None]
    held = held_ids(session, [r.id for r in rows], region=region)
    return _Selection(
        candidates=[r for r in rows if r.id not in held], held=sorted(held), flagged=flagged
    )


def _item(row: Interaction) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "channel": row.channel,
        "started_at": iso(row.started_at),
        "retention_class": row.retention_class,
        "retain_until": iso(row.retain_until),
    }


def dry_run(
    archive: Archive, actor: audit.Actor, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """What a purge would take now (the batch `propose_batch` would create); audited."""
    moment = now or utcnow()
    with archive.index.write() as session:
        # While a clock jump suspends purging a real run deletes nothing, so neither does this.
        suspended = purge_suspended(session, archive.node_id)
        chosen = _selection(session, now=moment, region=archive.config.node.default_region)
        rows = [] if suspended else chosen.candidates
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="purge.dry_run",
            object_type="purge",
            object_id=None,
            details={
                "now": iso(moment),
                "records": len(rows),
                "clock_suspended": suspended,
                **chosen.audit_details(),
            },
        )
        return [_item(r) for r in rows]


def propose_batch(
    archive: Archive, actor: audit.Actor, *, now: datetime | None = None
) -> dict[str, Any]:
    """Freeze today's candidates into a batch for a second records manager to approve.

    Raises:
        AccessDenied: not a records manager.
        TapelineError: nothing is expired and unheld, or a clock jump suspends purging.
    """
    require(actor, Action.RETENTION)
    moment = now or utcnow()
    with archive.index.write() as session:
        if purge_suspended(session, archive.node_id):
            raise TapelineError(
                "purging is suspended after a clock jump; confirm the time first "
                "(tapeline clock confirm)"
            )
        chosen = _selection(session, now=moment, region=archive.config.node.default_region)
        rows = chosen.candidates
        if not rows:
            raise TapelineError("nothing to purge: no expired, unheld record")
        batch = PurgeBatch(
            id=new_id(),
            state=PROPOSED,
            selected_at=moment,
            proposed_by=actor.name,
            proposed_at=utcnow(),
            approved_by=None,
            approved_at=None,
            not_before=None,
            executed_at=None,
            certificate_id=None,
        )
        session.add(batch)
        session.flush()
        for row in rows:
            session.add(
                PurgeItem(
                    batch_id=batch.id,
                    interaction_id=row.id,
                    retention_class=row.retention_class,
                    retain_until=row.retain_until,
                    outcome=None,
                )
            )
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="purge.proposed",
            object_type="purge_batch",
            object_id=batch.id,
            details={
                "records": [r.id for r in rows],
                "now": iso(moment),
                **chosen.audit_details(),
            },
        )
        session.flush()
        return describe(session, batch)


def approve_batch(
    archive: Archive, actor: audit.Actor, batch_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Approve a batch (a different records manager); it runs after the grace period.

    Raises:
        AccessDenied: not a records manager, or the proposer (refusal audited).
        NotFound: no proposed batch with that id.
    """
    require(actor, Action.RETENTION)
    moment = now or utcnow()
    with archive.index.write() as session:
        batch = session.get(PurgeBatch, batch_id)
        if batch is None or batch.state != PROPOSED:
            raise NotFound(f"no proposed purge batch {batch_id}")
        refused = batch.proposed_by == actor.name
        if not refused:
            batch.state = APPROVED
            batch.approved_by = actor.name
            batch.approved_at = moment
            batch.not_before = moment + timedelta(days=archive.config.retention.purge_grace_days)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="purge.approval_refused" if refused else "purge.approved",
            object_type="purge_batch",
            object_id=batch.id,
            details={"proposed_by": batch.proposed_by, "not_before": iso(batch.not_before)},
        )
        info = describe(session, batch)
    if refused:
        raise AccessDenied(f"{actor.name} proposed this batch and cannot approve it")
    return info


def describe(session: Session, batch: PurgeBatch) -> dict[str, Any]:
    """A batch as JSON, with its items."""
    items = session.execute(
        select(PurgeItem).where(PurgeItem.batch_id == batch.id).order_by(PurgeItem.interaction_id)
    ).scalars()
    return {
        "id": batch.id,
        "state": batch.state,
        "selected_at": iso(batch.selected_at),
        "proposed_by": batch.proposed_by,
        "approved_by": batch.approved_by,
        "approved_at": iso(batch.approved_at),
        "not_before": iso(batch.not_before),
        "executed_at": iso(batch.executed_at),
        "certificate_id": batch.certificate_id,
        "items": [
            {
                "id": i.interaction_id,
                "retention_class": i.retention_class,
                "retain_until": iso(i.retain_until),
                "outcome": i.outcome,
            }
            for i in items
        ],
    }


def list_batches(archive: Archive) -> list[dict[str, Any]]:
    """Every purge batch, newest first."""
    with archive.index.read() as session:
        rows = session.execute(select(PurgeBatch).order_by(PurgeBatch.proposed_at.desc())).scalars()
        return [describe(session, b) for b in rows]
