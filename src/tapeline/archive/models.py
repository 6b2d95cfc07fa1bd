"""The index: SQLAlchemy 2 models shared by the recorder, the web and the CLI.

Times are stored as naive UTC with millisecond precision (`UtcDateTime`) so SQLite and PostgreSQL
compare them the same way; Python code only ever sees aware UTC datetimes. Interactions of every
channel share one table, so the timeline of a person is one query (DESIGN §5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, naive UTC (ms precision) in the database, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to naive UTC milliseconds."""
        del dialect
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the index; use UTC-aware datetimes")
        value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Mark stored values as UTC."""
        del dialect
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """Now, aware UTC, truncated to milliseconds as the index stores it."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Base(DeclarativeBase):
    """Declarative base of the index."""

    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012  # SQLAlchemy reads it at class creation
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
        bytes: LargeBinary,
    }


class Counterparty(Base):
    """One external person, who may have several identifiers (numbers, BSUIDs)."""

    __tablename__ = "counterparties"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class CounterpartyIdentifier(Base):
    """An identifier of a counterparty: `e164:+4420...`, `bsuid:...`, `sip:...`."""

    __tablename__ = "counterparty_identifiers"
    identifier: Mapped[str] = mapped_column(String(200), primary_key=True)
    counterparty_id: Mapped[int] = mapped_column(ForeignKey("counterparties.id"), index=True)


class Interaction(Base):
    """A call, a WhatsApp message or a WhatsApp call: the unit of search, hold and retention."""

    __tablename__ = "interactions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(24))
    direction: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    line_number: Mapped[str | None] = mapped_column(String(32), index=True)
    line_owner: Mapped[str | None] = mapped_column(String(200))
    line_team: Mapped[str | None] = mapped_column(String(100), index=True)
    counterparty_id: Mapped[int | None] = mapped_column(ForeignKey("counterparties.id"), index=True)
    counterparty_identifier: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(64))
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    gaps: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    review_flag: Mapped[str | None] = mapped_column(String(200))
    retention_class: Mapped[str] = mapped_column(String(64))
    retain_until: Mapped[datetime]
    source_path: Mapped[str] = mapped_column(String(32))
    source_node: Mapped[str] = mapped_column(String(64))
    sip_call_id: Mapped[str | None] = mapped_column(String(256), index=True)
    manifest_object_id: Mapped[str | None] = mapped_column(String(36))
    filed_at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when a purge destroyed the content: the row stays as a tombstone (DESIGN §5).
    purged_at: Mapped[datetime | None]


class Participant(Base):
    """Someone on an interaction, as signalled (SIPREC participant, From/To, WhatsApp profile)."""

    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), index=True)
    role: Mapped[str] = mapped_column(String(24))
    identifier: Mapped[str] = mapped_column(String(200), index=True)
    display_name: Mapped[str | None] = mapped_column(String(200))


class StoredObject(Base):
    """A sealed object: its plaintext hash, size and wrapped data key (destroyed on purge)."""

    __tablename__ = "objects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    interaction_id: Mapped[str | None] = mapped_column(ForeignKey("interactions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    media_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    wrapped_key: Mapped[bytes | None]
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    purged_at: Mapped[datetime | None]


class Recording(Base):
    """The audio object of a call, with its channel map."""

    __tablename__ = "recordings"
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.id"))
    format: Mapped[str] = mapped_column(String(16))
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(BigInteger)
    channel_map: Mapped[list[Any]] = mapped_column(default=list)


class Stream(Base):
    """One RTP flow of a call, with its quality figures."""

    __tablename__ = "streams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(64))
    ssrc: Mapped[int | None] = mapped_column(BigInteger)
    codec: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[int | None] = mapped_column(Integer)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Message(Base):
    """A WhatsApp message's content and status (text is searchable metadata, DESIGN §5)."""

    __tablename__ = "messages"
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    wamid: Mapped[str | None] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(16))
    status_at: Mapped[datetime | None]
    errors: Mapped[list[Any]] = mapped_column(default=list)


class MediaObject(Base):
    """A media attachment of a message (image, audio, document...)."""

    __tablename__ = "media_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), index=True)
    object_id: Mapped[str | None] = mapped_column(ForeignKey("objects.id"))
    media_id: Mapped[str | None] = mapped_column(String(200))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="stored")


class CaptureGap(Base):
    """A span of a call without media (loss, hold, pause, crash)."""

    __tablename__ = "capture_gaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), index=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))


class User(Base):
    """An appliance account (argon2id password, optional TOTP)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    teams: Mapped[list[Any]] = mapped_column(default=list)
    totp_secret: Mapped[bytes | None]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class AuditEntry(Base):
    """One link of the audit chain: `hash` covers `prev_hash` and every other field."""

    __tablename__ = "audit_entries"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime]
    node_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single head row every audit writer locks in its own transaction."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxEvent(Base):
    """An event waiting for (or already given) to the MQTT publisher."""

    __tablename__ = "outbox_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    node_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(48))
    ts: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_node_seq", "node_id", "seq", unique=True),
        Index("ix_outbox_pending", "node_id", "sent_at"),
    )


class EventCounter(Base):
    """The per-node event sequence, locked by each writer of an event."""

    __tablename__ = "event_counters"
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class Alarm(Base):
    """A raised (and maybe cleared) alarm, shown on the status page and published as events."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    count: Mapped[int] = mapped_column(Integer, default=1)


class NodeHeartbeat(Base):
    """One row per recorder node: what it is and when it was last alive."""

    __tablename__ = "node_heartbeats"
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    status: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobLease(Base):
    """A lease on a named job so several recorders never run the same batch twice."""

    __tablename__ = "job_leases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class WebSession(Base):
    """A server-side login session of the web page (the cookie holds only the random token)."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # `full`, or `enrol-totp` while an account that must have a second factor sets one up: such
    # a session reaches only the enrolment page. The pending secret is wrapped by the archive key.
    stage: Mapped[str] = mapped_column(String(16), default="full")
    pending_totp: Mapped[bytes | None]


class SavedSearch(Base):
    """A stored query (name, filters, owner) that holds and extensions can be scoped by."""

    __tablename__ = "saved_searches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    owner: Mapped[str] = mapped_column(String(64))
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Hold(Base):
    """A legal hold (matter): `active`, then `release-requested`, then `released` (two people)."""

    __tablename__ = "holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matter: Mapped[str] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(24))
    placed_by: Mapped[str] = mapped_column(String(64))
    placed_at: Mapped[datetime]
    release_requested_by: Mapped[str | None] = mapped_column(String(64))
    release_requested_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(Text)
    released_by: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[datetime | None]


class HoldScope(Base):
    """What a hold covers: search filters, or a saved search (existing and future records)."""

    __tablename__ = "hold_scopes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"), index=True)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    saved_search_id: Mapped[int | None] = mapped_column(ForeignKey("saved_searches.id"))


class HeldRecord(Base):
    """A record a hold was applied to (when placed, or when the record was filed later)."""

    __tablename__ = "held_records"
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"), primary_key=True)
    interaction_id: Mapped[str] = mapped_column(
        ForeignKey("interactions.id"), primary_key=True, index=True
    )
    applied_at: Mapped[datetime]


class RetentionClassRow(Base):
    """A retention class as the index has it (authoritative after first start)."""

    __tablename__ = "retention_classes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    minimum_days: Mapped[int] = mapped_column(Integer)
    maximum_days: Mapped[int | None] = mapped_column(Integer)
    accessible_days: Mapped[int | None] = mapped_column(Integer)
    start: Mapped[str] = mapped_column(String(24))
    rule: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class RetentionPolicyRow(Base):
    """A policy: records matching `match` get `class_name`, if filed in its effective window."""

    __tablename__ = "retention_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    class_name: Mapped[str] = mapped_column(String(64))
    match: Mapped[dict[str, Any]] = mapped_column(default=dict)
    effective_from: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class RetentionProposal(Base):
    """A proposed class or policy change, waiting for a second records manager."""

    __tablename__ = "retention_proposals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]


class RetentionExtension(Base):
    """A longer retention for one record or a saved search (also applied to later matches)."""

    __tablename__ = "retention_extensions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    saved_search_id: Mapped[int | None] = mapped_column(ForeignKey("saved_searches.id"))
    interaction_id: Mapped[str | None] = mapped_column(ForeignKey("interactions.id"))
    retain_until: Mapped[datetime | None]
    minimum_days: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class PurgeBatch(Base):
    """A set of expired, unheld records proposed for disposal; runs after approval and grace."""

    __tablename__ = "purge_batches"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    selected_at: Mapped[datetime]
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime]
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]
    certificate_id: Mapped[str | None] = mapped_column(String(36))


class PurgeItem(Base):
    """One record of a purge batch, and what became of it."""

    __tablename__ = "purge_items"
    batch_id: Mapped[str] = mapped_column(ForeignKey("purge_batches.id"), primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    retention_class: Mapped[str] = mapped_column(String(64))
    retain_until: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(200))


class DestructionCertificate(Base):
    """A signed certificate of destruction, itself kept (with a sealed copy) for six years."""

    __tablename__ = "destruction_certificates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("purge_batches.id"), index=True)
    issued_at: Mapped[datetime]
    retain_until: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signature: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(Text)
    object_id: Mapped[str] = mapped_column(String(36))


class ScrubState(Base):
    """Where the background scrub is in its current cycle over every object."""

    __tablename__ = "scrub_state"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(36))
    cycle_started_at: Mapped[datetime]
    checked: Mapped[int] = mapped_column(BigInteger)
    problems: Mapped[int] = mapped_column(BigInteger)
    cycles_completed: Mapped[int] = mapped_column(Integer)
    last_cycle_at: Mapped[datetime | None]


class AuditCheckpoint(Base):
    """A signed Merkle root (RFC 6962) over a run of audit entries; detects a cut chain."""

    __tablename__ = "audit_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    seq_from: Mapped[int] = mapped_column(BigInteger)
    seq_to: Mapped[int] = mapped_column(BigInteger, index=True)
    root: Mapped[str] = mapped_column(String(64))
    head_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    signature: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(Text)


class CallDetailRecord(Base):
    """A call as the PBX or carrier billed it (imported CSV), reconciled against recordings."""

    __tablename__ = "call_detail_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[str] = mapped_column(String(36), index=True)
    row: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime]
    from_number: Mapped[str] = mapped_column(String(200))
    to_number: Mapped[str] = mapped_column(String(200))
    call_id: Mapped[str | None] = mapped_column(String(256), index=True)
    line: Mapped[str | None] = mapped_column(String(32))
    imported_at: Mapped[datetime]


class PlaybackAudit(Base):
    """One playback audit entry per login session and record (not one per Range request)."""

    __tablename__ = "playback_audits"
    session_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    interaction_id: Mapped[str] = mapped_column(ForeignKey("interactions.id"), primary_key=True)
    audited_at: Mapped[datetime]


class ApiToken(Base):
    """A per-user bearer token for `/api/v1` (only its SHA-256 is kept; shown once at creation)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
