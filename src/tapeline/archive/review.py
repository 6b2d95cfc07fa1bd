"""Supervisory review: a reviewer's flag, and its resolution filed as a record of its own.

A flag (FINRA 3110(b)(4)) blocks disposition of the record until it is resolved: the purge
selection and the recorder's executor both skip a record whose `review_flag` is set. The
resolution is evidence of review (3110.07: reviewer, item, date, action, comment; C-76), which
3110.09 says is kept like the communication itself, so it is filed through the one filing path
(`archive.filing`) as an interaction of kind `review_resolution`, linked to the flagged record
both ways, held and purged like any record, and audited. Opening a record never resolves it.

The CLI (`tapeline review flag|resolve`) and the web page both call these functions; the
role rules of DESIGN §7 (reviewer, or a supervisor for their own teams) are enforced here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, require, team_scope
from tapeline.archive.core import Archive
from tapeline.archive.filing import AttachmentIn, Filer, NewInteraction, PartyIn
from tapeline.archive.models import Interaction, utcnow
from tapeline.archive.records import iso, to_record
from tapeline.errors import NotFound, TapelineError

KIND = "review_resolution"
SOURCE_PATH = "review"
# `interactions.review_flag` is a String(200); the full reason is kept in details and the audit.
_FLAG_COLUMN_CHARS = 200


@dataclass(frozen=True, slots=True)
class _Flagged:
    """What the resolution record copies from the flagged record (read before filing)."""

    channel: str
    line_number: str | None
    counterparty: str | None
    retention_class: str
    flag: str
    flagged_by: str | None


def _flaggable(session: Session, actor: audit.Actor, interaction_id: str) -> Interaction:
    """The live record, if the actor may act on it (a supervisor only within their teams)."""
    row = session.get(Interaction, interaction_id)
    if row is None or row.purged_at is not None:
        raise NotFound(f"no interaction {interaction_id}")
    scope = team_scope(actor, Action.FLAG)
    if scope is not None and row.line_team not in scope:
        # Same answer as for a record that does not exist: a supervisor learns nothing about
        # other teams' records.
        raise NotFound(f"no interaction {interaction_id}")
    return row


def flag_for_review(
    archive: Archive, actor: audit.Actor, interaction_id: str, *, reason: str
) -> dict[str, Any]:
    """Flag a record for review; it cannot be disposed of until the flag is resolved.

    Raises:
        AccessDenied: not a reviewer (or a supervisor of the record's team).
        NotFound: no such live record, or one outside the supervisor's teams.
        TapelineError: no reason, or the record is already flagged.
    """
    require(actor, Action.FLAG)
    if not reason.strip():
        raise TapelineError("a review flag needs a reason")
    now = utcnow()
    with archive.index.write() as session:
        row = _flaggable(session, actor, interaction_id)
        if row.review_flag is not None:
            raise TapelineError(f"{interaction_id} is already flagged: {row.review_flag}")
        row.review_flag = f"{actor.name}: {reason}"[:_FLAG_COLUMN_CHARS]
        history = list(row.details.get("review", []))
        history.append({"flagged_by": actor.name, "flagged_at": iso(now), "reason": reason})
        row.details = {**row.details, "review": history}
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="review.flagged",
            object_type="interaction",
            object_id=interaction_id,
            details={"reason": reason},
        )
    return {"id": interaction_id, "review_flag": row.review_flag, "flagged_at": iso(now)}


def _read_flagged(archive: Archive, actor: audit.Actor, interaction_id: str) -> _Flagged:
    with archive.index.read() as session:
        row = _flaggable(session, actor, interaction_id)
        if row.review_flag is None:
            raise TapelineError(f"{interaction_id} has no open review flag")
        history = row.details.get("review") or [{}]
        return _Flagged(
            channel=row.channel,
            line_number=row.line_number,
            counterparty=row.counterparty_identifier,
            retention_class=row.retention_class,
            flag=row.review_flag,
            flagged_by=history[-1].get("flagged_by"),
        )


def resolve_review(
    archive: Archive, actor: audit.Actor, interaction_id: str, *, action: str, comment: str
) -> dict[str, Any]:
    """Resolve a record's review flag: file the resolution as a record, then lift the flag.

    The resolution record keeps the flagged record's channel, line and counterparty (so a hold
    on that party or line covers the evidence of review too) and at least its retention class.
    It is filed first; only then is the flag cleared, so a flag is never lifted without its
    evidence on file.

    Returns:
        The flagged record's id, the resolution record's id, and what was decided.

    Raises:
        AccessDenied: not a reviewer (or a supervisor of the record's team).
        NotFound: no such live record, or one outside the supervisor's teams.
        TapelineError: no action or comment, or the record has no open flag.
    """
    require(actor, Action.FLAG)
    if not action.strip() or not comment.strip():
        raise TapelineError("a review resolution needs an action and a comment")
    flagged = _read_flagged(archive, actor, interaction_id)
    now = utcnow()
    body = {
        "schema": "tapeline.review-resolution/1",
        "resolves": interaction_id,
        "flag": flagged.flag,
        "flagged_by": flagged.flagged_by,
        "reviewer": actor.name,
        "reviewer_roles": list(actor.roles),
        "resolved_at": iso(now),
        "action": action,
        "comment": comment,
    }
    resolution_id = Filer(archive, component="review").file(
        NewInteraction(
            channel=flagged.channel,
            kind=KIND,
            direction="internal",
            started_at=now,
            ended_at=now,
            source_path=SOURCE_PATH,
            line_number=flagged.line_number,
            counterparty=flagged.counterparty,
            participants=[PartyIn(role="reviewer", identifier=actor.name)],
            attachments=[
                AttachmentIn(
                    kind=KIND,
                    media_type="application/json",
                    data=json.dumps(body, sort_keys=True).encode(),
                )
            ],
            outcome=action,
            retention_class=flagged.retention_class,
            details={"review_resolution": body},
        )
    )
    with archive.index.write() as session:
        row = session.get_one(Interaction, interaction_id)
        row.review_flag = None
        history = list(row.details.get("review", []))
        history.append(
            {
                "resolved_by": actor.name,
                "resolved_at": iso(now),
                "action": action,
                "resolution": resolution_id,
            }
        )
        row.details = {**row.details, "review": history}
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="review.resolved",
            object_type="interaction",
            object_id=interaction_id,
            details={"resolution": resolution_id, "action": action, "comment": comment},
        )
    return {"id": interaction_id, "resolution": resolution_id, "action": action}


def open_flags(archive: Archive, actor: audit.Actor) -> list[dict[str, Any]]:
    """The review queue: live records with an open flag (a supervisor's teams only); audited.

    Raises:
        AccessDenied: not a reviewer (or a supervisor).
    """
    require(actor, Action.FLAG)
    scope = team_scope(actor, Action.FLAG)
    query = select(Interaction).where(
        Interaction.review_flag.is_not(None), Interaction.purged_at.is_(None)
    )
    if scope is not None:
        query = query.where(Interaction.line_team.in_(sorted(scope)))
    with archive.index.write() as session:
        rows = session.execute(query.order_by(Interaction.started_at, Interaction.id)).scalars()
        records = [to_record(session, row) for row in rows]
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="review.queue_viewed",
            object_type="search",
            object_id=None,
            details={"results": len(records)},
        )
    return records


def review_history(archive: Archive, interaction_id: str) -> list[dict[str, Any]]:
    """A record's flags and resolutions (with the resolution records' ids), oldest first.

    No role check or audit entry of its own: callers show it beside a record they have just
    read through `reading.show`, which checks access and audits the view.
    """
    with archive.index.read() as session:
        row = session.get(Interaction, interaction_id)
        return [] if row is None else list(row.details.get("review", []))
