"""Changes to filed records: message statuses, WhatsApp call progress, late media, placeholders.

The same rules as filing (`archive.filing`): content is sealed and stored first; then one index
transaction changes the rows, appends the audit entry and queues the outbox event. Nothing is
overwritten silently: every status and call event is kept in the record's history, and a late,
older status never replaces a newer one (sent < delivered < read < played; failed is final and
keeps its errors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.filing import (
    AttachmentIn,
    MediaIn,
    Stored,
    add_object_row,
    build_manifest,
    lock_objects,
)
from tapeline.archive.models import Interaction, MediaObject, Message, StoredObject
from tapeline.archive.parties import display
from tapeline.archive.records import to_record
from tapeline.archive.vault import SealedRef
from tapeline.errors import StorageError, TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit

log = logging.getLogger(__name__)

STATUS_RANK = {"received": 0, "accepted": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4}
FAILED = "failed"


def status_supersedes(current: str | None, new: str) -> bool:
    """Whether `new` should replace `current` as a message's status."""
    if current == FAILED:
        return False
    if new == FAILED:
        return True
    return STATUS_RANK.get(new, 0) > STATUS_RANK.get(current or "", -1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusIn:
    """A status webhook for one of our messages."""

    status: str
    at: datetime
    status_id: str
    errors: list[Any] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Amender:
    """Applies later facts to filed interactions."""

    def __init__(self, archive: Archive, *, component: str = "recorder") -> None:
        self._archive = archive
        self._actor = audit.Actor.system(component)

    def find_message(self, wamid: str) -> tuple[str, str] | None:
        """The interaction id and message type filed under a wamid, if any."""
        with self._archive.index.read() as session:
            row = session.execute(
                select(Message.interaction_id, Message.type).where(Message.wamid == wamid)
            ).first()
            return None if row is None else (row[0], row[1])

    def find_call(self, wacid: str) -> str | None:
        """The WhatsApp call interaction filed under a wacid, if any."""
        with self._archive.index.read() as session:
            return session.execute(
                select(Interaction.id).where(
                    Interaction.sip_call_id == wacid, Interaction.kind == "whatsapp_call"
                )
            ).scalar_one_or_none()

    def find_kept_body(self, sha256: str) -> str | None:
        """A flagged record already keeping a raw webhook body with this SHA-256, if any."""
        with self._archive.index.read() as session:
            return session.execute(
                select(Interaction.id)
                .join(StoredObject, StoredObject.interaction_id == Interaction.id)
                .where(
                    Interaction.kind == "capture_failure",
                    StoredObject.kind == "webhook_body",
                    StoredObject.sha256 == sha256,
                )
                .limit(1)
            ).scalar_one_or_none()

    def record_status(self, interaction_id: str, status: StatusIn) -> str:
        """Apply a status: `applied`, `kept` (older, history only) or `duplicate`.

        Raises:
            StorageError: the index refused the change.
        """
        with self._archive.index.write() as session:
            # Row locks: two statuses of one message may be filed at once on PostgreSQL.
            row = session.get_one(Interaction, interaction_id, with_for_update=True)
            msg = session.get_one(Message, interaction_id, with_for_update=True)
            history = list(row.details.get("status_history", []))
            if any(h.get("status_id") == status.status_id for h in history):
                return "duplicate"
            history.append(
                {
                    "status_id": status.status_id,
                    "status": status.status,
                    "at": status.at.isoformat(),
                    "errors": status.errors,
                    **status.details,
                }
            )
            row.details = {**row.details, "status_history": history}
            applied = status_supersedes(msg.status, status.status)
            if applied:
                msg.status = status.status
                msg.status_at = status.at
            if status.errors:
                msg.errors = [*msg.errors, *status.errors]
            self._audit(session, interaction_id, "message.status", {"status": status.status})
            self._event(
                session,
                row,
                EventType.MESSAGE_STATUS,
                {"status": status.status, "applied": applied, "current": msg.status},
            )
            return "applied" if applied else "kept"

    def record_call_event(
        self,
        interaction_id: str,
        *,
        event: dict[str, Any],
        ended_at: datetime | None = None,
        duration_ms: int | None = None,
        outcome: str | None = None,
    ) -> bool:
        """Add a call event (connect, status, terminate); False when it was already recorded.

        Raises:
            StorageError: the index refused the change.
        """
        with self._archive.index.write() as session:
            row = session.get_one(Interaction, interaction_id, with_for_update=True)
            events = list(row.details.get("call_events", []))
            if event in events:
                return False
            events.append(event)
            row.details = {**row.details, "call_events": events}
            if ended_at is not None:
                row.ended_at = ended_at
                row.duration_ms = int((ended_at - row.started_at).total_seconds() * 1000)
            if duration_ms is not None:
                row.duration_ms = duration_ms
            if outcome is not None:
                row.outcome = outcome
            self._audit(session, interaction_id, "call.event", {"event": event.get("event")})
            if ended_at is not None:
                self._event(session, row, EventType.CALL_ENDED, {"outcome": row.outcome})
            return True

    def complete_message(  # noqa: PLR0913  # what a placeholder lacked
        self,
        interaction_id: str,
        *,
        type_: str,
        text: str | None,
        media: list[MediaIn],
        attachments: list[AttachmentIn],
        details: dict[str, Any],
    ) -> None:
        """Fill in a placeholder message (status-only or history media placeholder).

        Raises:
            StorageError: storing or indexing failed; nothing changed.
        """
        until = self._retain_until(interaction_id)
        stored = self._store(
            until,
            [(a.kind, a.media_type, a.data) for a in attachments]
            + [
                ("media", m.mime_type or "application/octet-stream", m.data)
                for m in media
                if m.data is not None
            ],
        )
        try:
            with self._archive.index.write() as session:
                row = session.get_one(Interaction, interaction_id)
                msg = session.get_one(Message, interaction_id)
                previous = msg.type
                msg.type = type_
                msg.text = text
                row.details = {**row.details, **details, "completed_from": previous}
                for item in stored:
                    add_object_row(session, interaction_id, item)
                for wanted in media:
                    session.add(
                        MediaObject(
                            interaction_id=interaction_id,
                            object_id=None,
                            media_id=wanted.media_id,
                            mime_type=wanted.mime_type,
                            sha256=wanted.sha256,
                            state="pending" if wanted.pending else "failed",
                        )
                    )
                session.flush()
                stored.append(self._refresh_manifest(session, row))
                lock_objects(self._archive, session, row, stored, stored_until=until)
                self._audit(session, interaction_id, "record.completed", {"from": previous})
        except TapelineError:
            self._discard(stored)
            raise

    def pending_media(self) -> list[tuple[int, str, str | None, str | None, datetime]]:
        """Media still to fetch: (row id, media id, mime type, expected sha256, message time)."""
        with self._archive.index.read() as session:
            rows = session.execute(
                select(MediaObject, Interaction.started_at)
                .join(Interaction, Interaction.id == MediaObject.interaction_id)
                .where(MediaObject.state.in_(["pending", "retrying"]))
                .order_by(MediaObject.id)
            ).all()
            return [
                (m.id, m.media_id or "", m.mime_type, m.sha256, started)
                for m, started in rows
                if m.media_id
            ]

    def store_media(
        self, media_row: int, data: bytes, *, mime_type: str | None, expected: str | None
    ) -> str:
        """Seal a fetched media file into its record; returns its state (`stored`/`mismatch`).

        A hash that differs from the webhook's is an integrity event, but the file is kept.

        Raises:
            StorageError: storing or indexing failed; the media stays pending.
        """
        media_type = mime_type or "application/octet-stream"
        with self._archive.index.read() as session:
            owner = session.get_one(MediaObject, media_row).interaction_id
        until = self._retain_until(owner)
        stored = self._store(until, [("media", media_type, data)])
        ref = stored[0].ref
        state = "mismatch" if expected is not None and expected != ref.sha256 else "stored"
        try:
            with self._archive.index.write() as session:
                media = session.get_one(MediaObject, media_row)
                row = session.get_one(Interaction, media.interaction_id)
                add_object_row(session, row.id, stored[0])
                session.flush()
                media.object_id = ref.object_id
                media.sha256 = ref.sha256
                media.state = state
                if mime_type:
                    media.mime_type = mime_type
                stored.append(self._refresh_manifest(session, row))
                lock_objects(self._archive, session, row, stored, stored_until=until)
                details = {"media_id": media.media_id, "object_id": ref.object_id, "state": state}
                if state == "mismatch":
                    details["expected_sha256"] = expected or ""
                self._audit(session, row.id, "media.stored", details)
                self._event(session, row, EventType.MEDIA_STORED, details)
        except TapelineError:
            self._discard(stored)
            raise
        return state

    def media_failed(self, media_row: int, *, reason: str, final: bool) -> None:
        """Record a failed fetch (`retrying`), or the final give-up (`failed`).

        Raises:
            StorageError: the index refused the change.
        """
        with self._archive.index.write() as session:
            media = session.get_one(MediaObject, media_row)
            row = session.get_one(Interaction, media.interaction_id)
            media.state = "failed" if final else "retrying"
            details = {"media_id": media.media_id, "reason": reason, "final": final}
            self._audit(session, row.id, "media.failed", details)
            self._event(session, row, EventType.MEDIA_FAILED, details)

    def _retain_until(self, interaction_id: str) -> datetime:
        """The record's `retain_until`, which new objects of it are locked until (WORM store)."""
        with self._archive.index.read() as session:
            return session.get_one(Interaction, interaction_id).retain_until

    def _store(self, retain_until: datetime, items: list[tuple[str, str, bytes]]) -> list[Stored]:
        stored: list[Stored] = []
        vault = self._archive.vault
        try:
            for kind, media_type, data in items:
                ref = vault.store_bytes(data, retain_until=retain_until)
                stored.append(Stored(kind, media_type, ref))
        except TapelineError:
            self._discard(stored)
            raise
        return stored

    def _discard(self, stored: list[Stored]) -> None:
        for item in stored:
            try:
                self._archive.vault.store.delete(item.ref.object_id)
            except (OSError, StorageError):
                log.exception("could not remove unfiled object %s", item.ref.object_id)

    def _refresh_manifest(self, session: Session, row: Interaction) -> Stored:
        """A new manifest covering every object of the record (the old one stays, superseded)."""
        objects = session.execute(
            select(StoredObject).where(
                StoredObject.interaction_id == row.id,
                StoredObject.kind != "manifest",
                StoredObject.purged_at.is_(None),
            )
        ).scalars()
        current = [
            Stored(
                o.kind,
                o.media_type,
                SealedRef(
                    object_id=o.id,
                    sha256=o.sha256,
                    size=o.size,
                    wrapped_key=o.wrapped_key or b"",
                    key_id=o.key_id,
                ),
            )
            for o in objects
        ]
        manifest = build_manifest(
            self._archive, to_record(session, row), current, retain_until=row.retain_until
        )
        add_object_row(session, row.id, manifest)
        row.manifest_object_id = manifest.ref.object_id
        return manifest

    def _audit(
        self, session: Session, interaction_id: str, action: str, details: dict[str, Any]
    ) -> None:
        audit.append(
            session,
            node_id=self._archive.node_id,
            actor=self._actor,
            action=action,
            object_type="interaction",
            object_id=interaction_id,
            details=details,
        )

    def _event(
        self, session: Session, row: Interaction, type_: EventType, data: dict[str, Any]
    ) -> None:
        parties = {
            "line": None
            if row.line_number is None
            else {"number": row.line_number, "owner": row.line_owner, "team": row.line_team},
            "counterparty": None
            if row.counterparty_identifier is None
            else {"identifier": display(row.counterparty_identifier)},
        }
        emit(
            session,
            node_id=self._archive.node_id,
            type_=type_,
            data={"interaction_id": row.id, "channel": row.channel, "kind": row.kind, **data},
            parties=parties,
        )
