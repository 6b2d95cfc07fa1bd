"""The one JSON shape of an interaction (DESIGN §7, `docs/interaction.schema.json`) and queries.

Every command and route that prints records builds them here, so `query`, `show`, the API and
exports cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, union
from sqlalchemy.orm import Session

from tapeline.archive.models import (
    CaptureGap,
    Counterparty,
    CounterpartyIdentifier,
    HeldRecord,
    Hold,
    Interaction,
    MediaObject,
    Message,
    Participant,
    Recording,
    StoredObject,
    Stream,
)
from tapeline.archive.parties import display, identifier_for

HIDDEN_TAGS = frozenset({"selftest"})


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds and a `Z`."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _recording(session: Session, interaction_id: str) -> dict[str, Any] | None:
    rec = session.get(Recording, interaction_id)
    if rec is None:
        return None
    obj = session.get(StoredObject, rec.object_id)
    return {
        "object_id": rec.object_id,
        "format": rec.format,
        "sample_rate": rec.sample_rate,
        "channels": rec.channels,
        "duration_ms": rec.duration_ms,
        "channel_map": rec.channel_map,
        "sha256": obj.sha256 if obj else None,
        "size": obj.size if obj else None,
    }


def _message(session: Session, interaction_id: str) -> dict[str, Any] | None:
    msg = session.get(Message, interaction_id)
    if msg is None:
        return None
    media = session.execute(
        select(MediaObject).where(MediaObject.interaction_id == interaction_id)
    ).scalars()
    return {
        "type": msg.type,
        "text": msg.text,
        "wamid": msg.wamid,
        "status": msg.status,
        "status_at": iso(msg.status_at),
        "errors": msg.errors,
        "media": [
            {
                "object_id": m.object_id,
                "media_id": m.media_id,
                "mime_type": m.mime_type,
                "sha256": m.sha256,
                "state": m.state,
            }
            for m in media
        ],
    }


def holds_on(session: Session, interaction_id: str) -> list[dict[str, Any]]:
    """The unreleased holds applied to a record (hold status shows on the record, C-64)."""
    rows = session.execute(
        select(Hold)
        .join(HeldRecord, HeldRecord.hold_id == Hold.id)
        .where(HeldRecord.interaction_id == interaction_id, Hold.state != "released")
        .order_by(Hold.id)
    ).scalars()
    return [{"hold_id": h.id, "matter": h.matter, "state": h.state} for h in rows]


def to_record(session: Session, row: Interaction) -> dict[str, Any]:
    """The interaction as the JSON object every interface prints."""
    identifiers: list[str] = []
    if row.counterparty_id is not None:
        identifiers = sorted(
            display(i)
            for i in session.execute(
                select(CounterpartyIdentifier.identifier).where(
                    CounterpartyIdentifier.counterparty_id == row.counterparty_id
                )
            ).scalars()
        )
    participants = session.execute(
        select(Participant).where(Participant.interaction_id == row.id).order_by(Participant.id)
    ).scalars()
    streams = session.execute(
        select(Stream).where(Stream.interaction_id == row.id).order_by(Stream.id)
    ).scalars()
    gaps = session.execute(
        select(CaptureGap).where(CaptureGap.interaction_id == row.id).order_by(CaptureGap.start_ms)
    ).scalars()
    return {
        "id": row.id,
        "channel": row.channel,
        "kind": row.kind,
        "direction": row.direction,
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "duration_ms": row.duration_ms,
        "line": None
        if row.line_number is None
        else {"number": row.line_number, "owner": row.line_owner, "team": row.line_team},
        "counterparty": None
        if row.counterparty_identifier is None
        else {
            "id": row.counterparty_id,
            "identifier": display(row.counterparty_identifier),
            "identifiers": identifiers,
            "display_name": row.details.get("counterparty_name"),
        },
        "participants": [
            {"role": p.role, "identifier": display(p.identifier), "display_name": p.display_name}
            for p in participants
        ],
        "streams": [
            {
                "label": s.label,
                "ssrc": s.ssrc,
                "codec": s.codec,
                "channel": s.channel,
                "quality": s.quality,
            }
            for s in streams
        ],
        "recording": _recording(session, row.id),
        "message": _message(session, row.id),
        "outcome": row.outcome,
        "incomplete": row.incomplete,
        "gaps": [{"start_ms": g.start_ms, "end_ms": g.end_ms, "reason": g.reason} for g in gaps],
        "tags": row.tags,
        "review_flag": row.review_flag,
        "holds": holds_on(session, row.id),
        "retention_class": row.retention_class,
        "retain_until": iso(row.retain_until),
        "source": {
            "path": row.source_path,
            "node": row.source_node,
            "sip_call_id": row.sip_call_id,
        },
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """Search filters; every one is optional and they combine with AND."""

    party: str | None = None
    line: str | None = None
    team: str | None = None
    channel: str | None = None
    kind: str | None = None
    direction: str | None = None
    text: str | None = None
    counterparty_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_hidden: bool = False
    teams_scope: frozenset[str] | None = None
    limit: int | None = None
    offset: int = 0
    region: str = "US"
    ids: list[str] = field(default_factory=list)


def build_query(session: Session, filters: Filters) -> Select[Interaction]:
    """The SELECT for a set of filters, newest first."""
    query = select(Interaction)
    if filters.party:
        query = query.where(_party_clause(session, filters.party, filters.region))
    return _rest(query, filters)


def _party_clause(session: Session, party: str, region: str) -> ColumnElement[bool]:
    """Any interaction with this person: by any of their identifiers, or as a participant.

    Text that is not a number, URI or BSUID is also matched as part of a name (the counterparty's
    or a participant's display name).
    """
    ident = identifier_for(party, region)
    if ident.startswith("raw:"):
        pattern = "%" + _like_escape(party.strip()) + "%"
        named_people = select(Counterparty.id).where(
            Counterparty.display_name.ilike(pattern, escape="\\")
        )
        named_parties = select(Participant.interaction_id).where(
            Participant.display_name.ilike(pattern, escape="\\")
        )
        return or_(
            Interaction.counterparty_id.in_(named_people),
            Interaction.id.in_(named_parties),
            Interaction.id.in_(
                select(Participant.interaction_id).where(Participant.identifier == ident)
            ),
        )
    person = session.execute(
        select(CounterpartyIdentifier.counterparty_id).where(
            CounterpartyIdentifier.identifier == ident
        )
    ).scalar_one_or_none()
    in_participants = select(Participant.interaction_id).where(Participant.identifier == ident)
    if person is None:
        return Interaction.id.in_(in_participants)
    # One IN over a UNION of two index lookups rather than `IN (...) OR counterparty_id = X`:
    # PostgreSQL cannot use either index under the OR and scans interactions (bench/RESULTS.md).
    as_counterparty = select(Interaction.id).where(Interaction.counterparty_id == person)
    return Interaction.id.in_(union(in_participants, as_counterparty))


def _rest(query: Select[Interaction], filters: Filters) -> Select[Interaction]:  # noqa: C901, PLR0912  # one branch per filter
    query = query.where(Interaction.purged_at.is_(None))  # tombstones are not records any more
    if filters.line:
        query = query.where(
            or_(Interaction.line_number == filters.line, Interaction.line_owner == filters.line)
        )
    if filters.team:
        query = query.where(Interaction.line_team == filters.team)
    if filters.teams_scope is not None:
        query = query.where(Interaction.line_team.in_(sorted(filters.teams_scope)))
    if filters.channel:
        query = query.where(Interaction.channel == filters.channel)
    if filters.kind:
        query = query.where(Interaction.kind == filters.kind)
    if filters.direction:
        query = query.where(Interaction.direction == filters.direction)
    if filters.counterparty_id is not None:
        query = query.where(Interaction.counterparty_id == filters.counterparty_id)
    if filters.text:
        pattern = "%" + _like_escape(filters.text.strip()) + "%"
        query = query.where(
            Interaction.id.in_(
                select(Message.interaction_id).where(Message.text.ilike(pattern, escape="\\"))
            )
        )
    if filters.since:
        query = query.where(Interaction.started_at >= filters.since)
    if filters.until:
        query = query.where(Interaction.started_at < filters.until)
    if filters.ids:
        query = query.where(Interaction.id.in_(filters.ids))
    query = query.order_by(Interaction.started_at.desc(), Interaction.id.desc())
    if filters.limit:
        query = query.limit(filters.limit)
    if filters.offset:
        query = query.offset(filters.offset)
    return query


def _like_escape(text: str) -> str:
    """Text matched literally inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session: Session, filters: Filters) -> list[dict[str, Any]]:
    """Records matching the filters, as JSON objects (hidden tags left out unless asked)."""
    rows = session.execute(build_query(session, filters)).scalars()
    out = []
    for row in rows:
        if not filters.include_hidden and HIDDEN_TAGS.intersection(row.tags):
            continue
        out.append(to_record(session, row))
    return out
