"""The one filing path: every capture path (SIPREC, tap, WhatsApp, import, synthetic) ends here.

Order matters (DESIGN §4 step 6): content is sealed, stored, read back and checked first; then a
manifest object (the record's JSON and its objects' wrapped keys) is stored the same way; only then
one index transaction writes the interaction, its parts, the audit entry and the outbox events.
If that transaction fails, the objects just written are removed again (they were never a record),
and the caller's journal is kept, so the capture can be filed again later.

On a WORM store (S3 Object Lock) every object is written locked until the record's `retain_until`,
so the retention decision is taken before anything is stored, in its own short transaction.
Extensions and holds that match the record are only known once it is indexed; `lock_objects` then
lengthens the objects' lock and sets their legal hold, with read-back, before the transaction
commits, so a record is never indexed with objects the store would let go earlier than the index
says. On a WORM store the removal of unfiled objects is refused (they stay locked, unreferenced).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.db import serialise
from tapeline.archive.holds import apply_at_filing, held_ids
from tapeline.archive.ids import new_id
from tapeline.archive.models import (
    CaptureGap,
    Counterparty,
    CounterpartyIdentifier,
    Interaction,
    MediaObject,
    Message,
    Participant,
    Recording,
    StoredObject,
    Stream,
    utcnow,
)
from tapeline.archive.parties import identifier_for
from tapeline.archive.policies import decide_for_filing, extend_at_filing
from tapeline.archive.records import to_record
from tapeline.archive.retention import RecordFacts, RetentionDecision
from tapeline.archive.vault import SealedRef
from tapeline.errors import StorageError, TapelineError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyIn:
    """A participant as signalled."""

    role: str
    identifier: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamIn:
    """One media stream and its quality figures."""

    label: str | None
    ssrc: int | None = None
    codec: str | None = None
    channel: int | None = None
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingIn:
    """Encoded audio of a call (FLAC or Ogg/Opus), stereo: channel 0 = the recorded line."""

    data: bytes
    format: str
    sample_rate: int
    channels: int
    duration_ms: int
    channel_map: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageIn:
    """A WhatsApp message's content."""

    wamid: str | None
    type: str
    text: str | None = None
    status: str | None = None
    status_at: datetime | None = None
    errors: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaIn:
    """A media attachment (bytes when fetched, None when the fetch failed)."""

    data: bytes | None
    media_id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    pending: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GapIn:
    """A span without media."""

    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentIn:
    """Other content kept with the record (raw rs-metadata, the raw webhook body...)."""

    kind: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class NewInteraction:
    """Everything a capture path knows about one interaction when it is finished."""

    channel: str
    kind: str
    direction: str
    started_at: datetime
    ended_at: datetime | None = None
    source_path: str
    line_number: str | None = None
    counterparty: str | None = None
    counterparty_name: str | None = None
    counterparty_aliases: list[str] = field(default_factory=list)
    participants: list[PartyIn] = field(default_factory=list)
    streams: list[StreamIn] = field(default_factory=list)
    recording: RecordingIn | None = None
    message: MessageIn | None = None
    media: list[MediaIn] = field(default_factory=list)
    attachments: list[AttachmentIn] = field(default_factory=list)
    outcome: str | None = None
    incomplete: bool = False
    gaps: list[GapIn] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    sip_call_id: str | None = None
    retention_class: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Stored:
    """An object sealed and stored for a record, before (or after) it is indexed."""

    kind: str
    media_type: str
    ref: SealedRef


def _counterparty_id(
    session: Session, identifier: str, name: str | None, aliases: list[str] | None = None
) -> int:
    """The person known by `identifier` or any alias (first match wins); the rest are linked."""
    every = list(dict.fromkeys([identifier, *(aliases or [])]))
    # Two nodes (or two calls on one node) filing the first calls with a new person at once would
    # both find nobody and both insert the identifier; one filing would then fail. Taking a lock
    # per identifier (sorted: no deadlock) makes the second wait and find the first's row.
    for ident in sorted(every):
        serialise(session, f"counterparty:{ident}")
    found = session.execute(
        select(CounterpartyIdentifier).where(CounterpartyIdentifier.identifier.in_(every))
    ).scalars()
    by_identifier = {row.identifier: row.counterparty_id for row in found}
    existing = next((by_identifier[i] for i in every if i in by_identifier), None)
    if existing is None:
        person = Counterparty(display_name=name, created_at=utcnow())
        session.add(person)
        session.flush()
        existing = person.id
    for ident in every:
        if ident not in by_identifier:
            session.add(CounterpartyIdentifier(identifier=ident, counterparty_id=existing))
    return existing


def link_identifier(session: Session, counterparty_id: int, identifier: str) -> None:
    """Record that another identifier (a second number, a BSUID) belongs to the same person."""
    if session.get(CounterpartyIdentifier, identifier) is None:
        session.add(CounterpartyIdentifier(identifier=identifier, counterparty_id=counterparty_id))


def build_manifest(
    archive: Archive,
    record: dict[str, Any],
    stored: list[Stored],
    *,
    retain_until: datetime | None = None,
) -> Stored:
    """Seal a record's manifest: its JSON and the wrapped keys of its objects (DESIGN §5).

    `retain_until` is the record's; a WORM store locks the manifest until then.
    """
    body = {
        "schema": "tapeline.manifest/1",
        "record": record,
        "objects": [
            {
                "object_id": s.ref.object_id,
                "kind": s.kind,
                "media_type": s.media_type,
                "sha256": s.ref.sha256,
                "size": s.ref.size,
                "key_id": s.ref.key_id,
                "wrapped_key": base64.b64encode(s.ref.wrapped_key).decode(),
            }
            for s in stored
        ],
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ref = archive.vault.store_self_keyed(data, retain_until=retain_until)
    return Stored("manifest", "application/json", ref)


def lock_objects(
    archive: Archive,
    session: Session,
    row: Interaction,
    objects: list[Stored],
    *,
    stored_until: datetime,
) -> None:
    """Bring a WORM store's locks on a record's new objects up to what the index now says.

    The objects were written locked until `stored_until`; an extension that matched the record
    since then lengthened `row.retain_until`, and a hold whose scope matches it must show as the
    store's legal hold. Both are confirmed by read-back in the store; nothing is ever shortened.
    Nothing to do on a local disk (not WORM: the index alone keeps retention and holds).

    Raises:
        StorageError: the store refused or did not read back the lock.
    """
    store = archive.vault.store
    if not store.worm or not objects:
        return
    if row.retain_until > stored_until:
        for item in objects:
            store.extend_retention(item.ref.object_id, row.retain_until)
    region = archive.config.node.default_region
    if held_ids(session, [row.id], region=region):
        for item in objects:
            store.set_legal_hold(item.ref.object_id, on=True)


def add_object_row(session: Session, interaction_id: str, item: Stored) -> None:
    """Index a stored object as part of an interaction."""
    session.add(
        StoredObject(
            id=item.ref.object_id,
            interaction_id=interaction_id,
            kind=item.kind,
            media_type=item.media_type,
            sha256=item.ref.sha256,
            size=item.ref.size,
            wrapped_key=item.ref.wrapped_key,
            key_id=item.ref.key_id,
            created_at=utcnow(),
            purged_at=None,
        )
    )


class Filer:
    """Files finished interactions into the archive."""

    def __init__(self, archive: Archive, *, component: str = "recorder") -> None:
        self._archive = archive
        self._actor = audit.Actor.system(component)

    def _store_all(self, new: NewInteraction, *, retain_until: datetime) -> list[Stored]:
        vault = self._archive.vault
        stored: list[Stored] = []
        try:
            if new.recording is not None:
                media_type = "audio/flac" if new.recording.format == "flac" else "audio/ogg"
                ref = vault.store_bytes(new.recording.data, retain_until=retain_until)
                stored.append(Stored("recording", media_type, ref))
            for media in new.media:
                if media.data is not None:
                    kind_type = media.mime_type or "application/octet-stream"
                    ref = vault.store_bytes(media.data, retain_until=retain_until)
                    stored.append(Stored("media", kind_type, ref))
            for extra in new.attachments:
                ref = vault.store_bytes(extra.data, retain_until=retain_until)
                stored.append(Stored(extra.kind, extra.media_type, ref))
        except TapelineError:
            self._discard(stored)
            raise
        return stored

    def _discard(self, stored: list[Stored]) -> None:
        store = self._archive.vault.store
        for item in stored:
            try:
                store.delete(item.ref.object_id)
            except (OSError, StorageError) as exc:
                if store.worm:  # expected: the store keeps it locked; no index row points at it
                    log.warning(
                        "unfiled object %s stays locked in the store: %s", item.ref.object_id, exc
                    )
                else:
                    log.exception("could not remove unfiled object %s", item.ref.object_id)

    def file(
        self, new: NewInteraction, *, events: list[tuple[EventType, dict[str, Any]]] | None = None
    ) -> str:
        """File one interaction; returns its id.

        Raises:
            StorageError: storing or indexing failed; nothing was filed (DiskFull when full).
        """
        decision = self._decide(new)
        stored = self._store_all(new, retain_until=decision.retain_until)
        interaction_id = new_id()
        try:
            with self._archive.index.write() as session:
                record = self._index(session, interaction_id, new, stored, decision)
                row = session.get_one(Interaction, interaction_id)
                manifest = self._manifest(record, stored, row.retain_until)
                stored.append(manifest)
                self._add_object(session, interaction_id, manifest)
                row.manifest_object_id = manifest.ref.object_id
                lock_objects(
                    self._archive, session, row, stored, stored_until=decision.retain_until
                )
                audit.append(
                    session,
                    node_id=self._archive.node_id,
                    actor=self._actor,
                    action="record.filed",
                    object_type="interaction",
                    object_id=interaction_id,
                    details={
                        "kind": new.kind,
                        "channel": new.channel,
                        "objects": [s.ref.object_id for s in stored],
                        "sha256": {s.ref.object_id: s.ref.sha256 for s in stored},
                    },
                )
                self._emit(session, interaction_id, new, record, events or [])
        except TapelineError:
            self._discard(stored)
            raise
        return interaction_id

    def _manifest(
        self, record: dict[str, Any], stored: list[Stored], retain_until: datetime
    ) -> Stored:
        return build_manifest(self._archive, record, stored, retain_until=retain_until)

    def _facts(self, new: NewInteraction) -> RecordFacts:
        line = next((ln for ln in self._archive.config.lines if ln.number == new.line_number), None)
        return RecordFacts(
            started_at=new.started_at,
            channel=new.channel,
            direction=new.direction,
            line=new.line_number,
            owner=line.owner if line else None,
            team=line.team if line else None,
            tags=tuple(new.tags),
        )

    def _decide(self, new: NewInteraction) -> RetentionDecision:
        """The record's class and `retain_until`, known before its objects are locked with it."""
        with self._archive.index.write() as session:
            return decide_for_filing(
                session, self._archive, self._facts(new), requested=new.retention_class
            )

    def _add_object(self, session: Session, interaction_id: str, item: Stored) -> None:
        add_object_row(session, interaction_id, item)

    def _index(
        self,
        session: Session,
        interaction_id: str,
        new: NewInteraction,
        stored: list[Stored],
        decision: RetentionDecision,
    ) -> dict[str, Any]:
        config = self._archive.config
        region = config.node.default_region
        line = next((ln for ln in config.lines if ln.number == new.line_number), None)
        person_id = None
        person_ident = None
        if new.counterparty:
            party_region = line.region or region if line else region
            person_ident = identifier_for(new.counterparty, party_region)
            aliases = [identifier_for(a, party_region) for a in new.counterparty_aliases]
            person_id = _counterparty_id(session, person_ident, new.counterparty_name, aliases)
        duration = None
        if new.ended_at is not None:
            duration = int((new.ended_at - new.started_at).total_seconds() * 1000)
        details = dict(new.details)
        details["retention_trace"] = decision.trace
        if new.counterparty_name:
            details["counterparty_name"] = new.counterparty_name
        session.add(
            Interaction(
                id=interaction_id,
                channel=new.channel,
                kind=new.kind,
                direction=new.direction,
                started_at=new.started_at,
                ended_at=new.ended_at,
                duration_ms=duration,
                line_number=new.line_number,
                line_owner=line.owner if line else None,
                line_team=line.team if line else None,
                counterparty_id=person_id,
                counterparty_identifier=person_ident,
                outcome=new.outcome,
                incomplete=new.incomplete,
                gaps=[],
                tags=list(new.tags),
                review_flag=None,
                retention_class=decision.retention_class,
                retain_until=decision.retain_until,
                source_path=new.source_path,
                source_node=self._archive.node_id,
                sip_call_id=new.sip_call_id,
                manifest_object_id=None,
                filed_at=utcnow(),
                details=details,
            )
        )
        session.flush()
        for item in stored:
            self._add_object(session, interaction_id, item)
        session.flush()
        self._index_parts(session, interaction_id, new, stored, region)
        session.flush()
        extend_at_filing(session, self._archive, session.get_one(Interaction, interaction_id))
        apply_at_filing(session, interaction_id, region=region)
        session.flush()
        return to_record(session, session.get_one(Interaction, interaction_id))

    def _index_parts(
        self,
        session: Session,
        interaction_id: str,
        new: NewInteraction,
        stored: list[Stored],
        region: str,
    ) -> None:
        for party in new.participants:
            session.add(
                Participant(
                    interaction_id=interaction_id,
                    role=party.role,
                    identifier=identifier_for(party.identifier, region),
                    display_name=party.display_name,
                )
            )
        for stream in new.streams:
            session.add(
                Stream(
                    interaction_id=interaction_id,
                    label=stream.label,
                    ssrc=stream.ssrc,
                    codec=stream.codec,
                    channel=stream.channel,
                    quality=stream.quality,
                )
            )
        for gap in new.gaps:
            session.add(
                CaptureGap(
                    interaction_id=interaction_id,
                    start_ms=gap.start_ms,
                    end_ms=gap.end_ms,
                    reason=gap.reason,
                )
            )
        by_kind = iter([s for s in stored if s.kind == "media"])
        if new.recording is not None:
            rec = next(s for s in stored if s.kind == "recording")
            session.add(
                Recording(
                    interaction_id=interaction_id,
                    object_id=rec.ref.object_id,
                    format=new.recording.format,
                    sample_rate=new.recording.sample_rate,
                    channels=new.recording.channels,
                    duration_ms=new.recording.duration_ms,
                    channel_map=new.recording.channel_map,
                )
            )
        if new.message is not None:
            msg = new.message
            session.add(
                Message(
                    interaction_id=interaction_id,
                    wamid=msg.wamid,
                    type=msg.type,
                    text=msg.text,
                    status=msg.status,
                    status_at=msg.status_at,
                    errors=msg.errors,
                )
            )
        for media in new.media:
            obj = next(by_kind) if media.data is not None else None
            session.add(
                MediaObject(
                    interaction_id=interaction_id,
                    object_id=obj.ref.object_id if obj else None,
                    media_id=media.media_id,
                    mime_type=media.mime_type,
                    sha256=obj.ref.sha256 if obj else media.sha256,
                    state="stored" if obj else ("pending" if media.pending else "failed"),
                )
            )

    def _emit(
        self,
        session: Session,
        interaction_id: str,
        new: NewInteraction,
        record: dict[str, Any],
        extra: list[tuple[EventType, dict[str, Any]]],
    ) -> None:
        node = self._archive.node_id
        parties = {"line": record["line"], "counterparty": record["counterparty"]}
        base = {"interaction_id": interaction_id, "channel": new.channel, "kind": new.kind}
        if new.kind == "capture_failure":
            emit(
                session,
                node_id=node,
                type_=EventType.RECORDING_FAILED,
                data={**base, "reason": new.outcome},
                parties=parties,
            )
        elif new.recording is not None:
            emit(
                session,
                node_id=node,
                type_=EventType.RECORDING_STORED,
                data={
                    **base,
                    "duration_ms": new.recording.duration_ms,
                    "incomplete": new.incomplete,
                },
                parties=parties,
            )
        elif new.message is not None:
            type_ = (
                EventType.MESSAGE_SENT
                if new.direction == "outbound"
                else EventType.MESSAGE_RECEIVED
            )
            emit(
                session,
                node_id=node,
                type_=type_,
                data={**base, "message_type": new.message.type},
                parties=parties,
            )
        for type_, data in extra:
            emit(session, node_id=node, type_=type_, data={**base, **data}, parties=parties)
