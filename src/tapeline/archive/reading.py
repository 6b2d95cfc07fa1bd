"""Reading records: search and show, with the role checks and the audit entries they need.

A record the actor may not see (outside a supervisor's teams) is answered as if it did not exist
(`NotFound`, so the web says 404, not 403) and the refusal is audited in its own transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, require, team_scope
from tapeline.archive.core import Archive
from tapeline.archive.models import (
    Counterparty,
    CounterpartyIdentifier,
    Interaction,
    MediaObject,
    PlaybackAudit,
    Recording,
    StoredObject,
    utcnow,
)
from tapeline.archive.parties import display
from tapeline.archive.records import Filters, search, to_record
from tapeline.errors import NotFound


def find(archive: Archive, actor: audit.Actor, filters: Filters) -> list[dict[str, Any]]:
    """Search as `actor` (supervisors see only their teams). The search itself is audited."""
    require(actor, Action.SEARCH)
    scoped = replace(
        filters,
        teams_scope=team_scope(actor, Action.SEARCH),
        region=archive.config.node.default_region,
    )
    with archive.index.write() as session:
        results = search(session, scoped)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="record.searched",
            object_type="search",
            object_id=None,
            details={"results": len(results)},
        )
    return results


class _OutOfScope(Exception):  # noqa: N818  # private signal, never leaves this module
    """The record exists but lies outside the actor's teams."""

    def __init__(self, object_id: str) -> None:
        super().__init__(object_id)
        self.object_id = object_id


@contextlib.contextmanager
def _denials(archive: Archive, actor: audit.Actor) -> Iterator[None]:
    """Turn an out-of-scope read into an audited NotFound, after the reading transaction ended."""
    try:
        yield
    except _OutOfScope as exc:
        with archive.index.write() as session:
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="record.denied",
                object_type="interaction",
                object_id=exc.object_id,
                details={"reason": "outside the actor's teams"},
            )
        raise NotFound(f"no interaction {exc.object_id}") from None


def _visible(actor: audit.Actor, session: Session, interaction_id: str) -> Interaction:
    row = session.get(Interaction, interaction_id)
    if row is None:
        raise NotFound(f"no interaction {interaction_id}")
    scope = team_scope(actor, Action.SEARCH)
    if scope is not None and row.line_team not in scope:
        raise _OutOfScope(interaction_id)
    return row


def show(
    archive: Archive, actor: audit.Actor, interaction_id: str, *, audio: bool = False
) -> tuple[dict[str, Any], bytes | None]:
    """One record, and its decrypted recording when asked; both accesses are audited.

    Raises:
        AccessDenied: the actor's roles may not read (or play) records.
        NotFound: no such record (or one outside the actor's teams), or no recording when audio
            is asked for.
    """
    require(actor, Action.PLAY if audio else Action.SEARCH)
    with _denials(archive, actor), archive.index.write() as session:
        row = _visible(actor, session, interaction_id)
        record = to_record(session, row)
        data = _recording_bytes(archive, session, interaction_id) if audio else None
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="recording.played" if audio else "record.viewed",
            object_type="interaction",
            object_id=interaction_id,
        )
    return record, data


@dataclass(frozen=True, slots=True, kw_only=True)
class Audio:
    """A decrypted recording and how to label it."""

    data: bytes
    media_type: str


def play(
    archive: Archive,
    actor: audit.Actor,
    interaction_id: str,
    *,
    once_key: str,
    client: str | None = None,
) -> Audio:
    """The decrypted recording for playback, audited once per `once_key` (a login session).

    A player asks for many byte ranges of one recording; the examiner wants one line saying who
    listened, not one per range, so the first request of a session writes the entry and the rest
    find it in `playback_audits`.

    Raises:
        AccessDenied: the actor's roles may not play recordings.
        NotFound: no such record, one outside the actor's teams, or one without a recording.
    """
    require(actor, Action.PLAY)
    with _denials(archive, actor), archive.index.write() as session:
        _visible(actor, session, interaction_id)
        rec = session.get(Recording, interaction_id)
        data = _recording_bytes(archive, session, interaction_id)
        if session.get(PlaybackAudit, (once_key, interaction_id)) is None:
            session.add(
                PlaybackAudit(
                    session_key=once_key, interaction_id=interaction_id, audited_at=utcnow()
                )
            )
            audit.append(
                session,
                node_id=archive.node_id,
                actor=actor,
                action="recording.played",
                object_type="interaction",
                object_id=interaction_id,
                details={"client": client} if client else {},
            )
    media_type = "audio/flac" if rec is not None and rec.format == "flac" else "audio/ogg"
    return Audio(data=data, media_type=media_type)


def _recording_bytes(archive: Archive, session: Session, interaction_id: str) -> bytes:
    rec = session.get(Recording, interaction_id)
    obj = session.get(StoredObject, rec.object_id) if rec else None
    if obj is None or obj.wrapped_key is None:
        raise NotFound(f"interaction {interaction_id} has no recording")
    return archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A decrypted media attachment of a message."""

    data: bytes
    media_type: str
    interaction_id: str


def media(
    archive: Archive, actor: audit.Actor, object_id: str, *, client: str | None = None
) -> Attachment:
    """A message's media attachment for download (every download is audited).

    Raises:
        AccessDenied: the actor's roles may not read content.
        NotFound: no such attachment, one outside the actor's teams, or one not stored.
    """
    require(actor, Action.PLAY)
    with _denials(archive, actor), archive.index.write() as session:
        row = session.execute(
            select(MediaObject).where(MediaObject.object_id == object_id)
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no media {object_id}")
        _visible(actor, session, row.interaction_id)
        obj = session.get(StoredObject, object_id)
        if obj is None or obj.wrapped_key is None:
            raise NotFound(f"media {object_id} is not stored")
        data = archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="media.downloaded",
            object_type="media",
            object_id=object_id,
            details={"interaction": row.interaction_id, **({"client": client} if client else {})},
        )
    return Attachment(
        data=data,
        media_type=row.mime_type or obj.media_type or "application/octet-stream",
        interaction_id=row.interaction_id,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """A counterparty with every identifier it is known by."""

    id: int
    display_name: str | None
    identifiers: list[str]


def conversation(  # noqa: PLR0913  # the person, the channel and the window
    archive: Archive,
    actor: audit.Actor,
    counterparty_id: int,
    *,
    channel: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> tuple[Person, list[dict[str, Any]]]:
    """A person's interactions, oldest first (a WhatsApp thread, or the whole timeline).

    Only records the actor may see are returned (team scope); the viewing is audited.

    Raises:
        AccessDenied: the actor's roles may not read records.
        NotFound: no such counterparty.
    """
    require(actor, Action.SEARCH)
    filters = Filters(
        counterparty_id=counterparty_id,
        channel=channel,
        since=since,
        until=until,
        limit=limit,
        teams_scope=team_scope(actor, Action.SEARCH),
        region=archive.config.node.default_region,
    )
    with archive.index.write() as session:
        person_row = session.get(Counterparty, counterparty_id)
        if person_row is None:
            raise NotFound(f"no counterparty {counterparty_id}")
        identifiers = sorted(
            display(i)
            for i in session.execute(
                select(CounterpartyIdentifier.identifier).where(
                    CounterpartyIdentifier.counterparty_id == counterparty_id
                )
            ).scalars()
        )
        records = list(reversed(search(session, filters)))
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="counterparty.viewed",
            object_type="counterparty",
            object_id=str(counterparty_id),
            details={"channel": channel, "results": len(records)},
        )
    person = Person(
        id=counterparty_id, display_name=person_row.display_name, identifiers=identifiers
    )
    return person, records
