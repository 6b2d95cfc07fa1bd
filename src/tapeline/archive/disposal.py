"""Disposition, second half: the recorder's executor, the only code that deletes records.

Theory of operation: for each approved batch past its grace period (`execute_due`), the executor
re-checks every invariant from the index as it is now, trusting nothing the batch says: two
different, enabled records managers proposed and approved it; each record is still expired by
its stored `retain_until` *and* by its class minimum counted from its start (never below the
shipped template), is not held (recorded or live scope match) and has no open review flag. A
record failing any check is refused and audited, never deleted. For the rest a signed
certificate of destruction is built and stored first; then one index transaction destroys each
object's data key, turns the record into a tombstone, stores the certificate and audits it all;
then the object bytes are deleted and a post-purge check confirms nothing is readable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Role
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.holds import held_ids
from tapeline.archive.ids import new_id
from tapeline.archive.models import (
    CaptureGap,
    DestructionCertificate,
    Interaction,
    MediaObject,
    Message,
    Participant,
    PurgeBatch,
    PurgeItem,
    Recording,
    StoredObject,
    Stream,
    User,
)
from tapeline.archive.nodes import raise_alarm
from tapeline.archive.policies import minimum_for
from tapeline.archive.purge import APPROVED, EXECUTED
from tapeline.archive.records import iso
from tapeline.archive.signing import canonical_json, sign
from tapeline.archive.trustedclock import purge_suspended
from tapeline.errors import IntegrityError, NotFound, StorageError
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit

log = logging.getLogger(__name__)
CERTIFICATE_RETENTION = timedelta(days=2192)  # six years (C-68)
ACTOR = audit.Actor.system("purge")


@dataclass(slots=True)
class Plan:
    """What one batch run will destroy, and what it refuses."""

    batch_id: str
    purge: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    batch_refused: str | None = None


def _approvers_ok(session: Session, batch: PurgeBatch) -> str | None:
    if not batch.approved_by or batch.approved_by == batch.proposed_by:
        return "batch lacks two distinct people (proposer and approver)"
    for name in (batch.proposed_by, batch.approved_by):
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None or user.disabled or Role.RECORDS_MANAGER not in user.roles:
            return f"{name} is not an enabled records manager"
    return None


def _record_refusal(
    session: Session, archive: Archive, row: Interaction | None, now: datetime
) -> str | None:
    if row is None or row.purged_at is not None:
        return "no such live record"
    if row.retain_until >= now:
        return f"not expired: retain_until {iso(row.retain_until)}"
    floor = minimum_for(session, row, archive.config.retention.fiscal_year_end)
    if floor is None:
        return f"unknown retention class {row.retention_class}"
    if floor >= now:
        return f"class {row.retention_class} minimum runs until {iso(floor)}"
    if row.review_flag is not None:
        return "open review flag"
    return None


def plan_batch(session: Session, archive: Archive, batch: PurgeBatch, now: datetime) -> Plan:
    """Re-check a batch against the index as it is now."""
    plan = Plan(batch_id=batch.id)
    plan.batch_refused = _approvers_ok(session, batch)
    items = list(session.execute(select(PurgeItem).where(PurgeItem.batch_id == batch.id)).scalars())
    ids = sorted(i.interaction_id for i in items)
    held = held_ids(session, ids, region=archive.config.node.default_region)
    for rid in ids:
        row = session.get(Interaction, rid)
        reason = "held" if rid in held else _record_refusal(session, archive, row, now)
        if plan.batch_refused:
            reason = plan.batch_refused
        if reason is not None or row is None:
            plan.refused[rid] = reason or "no such live record"
            continue
        objects = session.execute(
            select(StoredObject)
            .where(StoredObject.interaction_id == rid, StoredObject.purged_at.is_(None))
            .order_by(StoredObject.id)
        ).scalars()
        store = archive.vault.store
        plan.purge.append(
            {
                "id": rid,
                "kind": row.kind,
                "channel": row.channel,
                "started_at": iso(row.started_at),
                "retention_class": row.retention_class,
                "retain_until": iso(row.retain_until),
                "hold_check": "not held at execution",
                # the store's version ids name exactly what is deleted on a WORM (S3) store;
                # a local disk has no versions, so the list is empty there
                "objects": [
                    {
                        "object_id": o.id,
                        "kind": o.kind,
                        "sha256": o.sha256,
                        "size": o.size,
                        "versions": store.version_ids(o.id),
                    }
                    for o in objects
                ],
            }
        )
    return plan


def _certificate_body(
    archive: Archive, batch: PurgeBatch, plan: Plan, now: datetime, cert_id: str
) -> dict[str, Any]:
    return {
        "schema": "tapeline.certificate-of-destruction/1",
        "certificate_id": cert_id,
        "batch_id": batch.id,
        "node_id": archive.node_id,
        "issued_at": iso(now),
        "proposed_by": batch.proposed_by,
        "proposed_at": iso(batch.proposed_at),
        "approved_by": batch.approved_by,
        "approved_at": iso(batch.approved_at),
        "grace_days": archive.config.retention.purge_grace_days,
        "method": "data keys destroyed (crypto-shredding) and object bytes deleted",
        "locations": [archive.storage_mode],
        "records": plan.purge,
        "refused": plan.refused,
    }


def _destroy_rows(session: Session, rid: str, now: datetime) -> None:
    for obj in session.execute(
        select(StoredObject).where(StoredObject.interaction_id == rid)
    ).scalars():
        obj.wrapped_key = None
        obj.purged_at = now
    for model in (Participant, Stream, CaptureGap, MediaObject, Message, Recording):
        session.execute(delete(model).where(model.interaction_id == rid))
    row = session.get_one(Interaction, rid)
    row.purged_at = now
    row.counterparty_id = None
    row.counterparty_identifier = None
    row.line_owner = None
    row.sip_call_id = None
    row.tags = []
    row.gaps = []
    row.outcome = None
    row.details = {
        "tombstone": {"purged_at": iso(now), "trace": row.details.get("retention_trace")}
    }


def _still_approved(
    session: Session, archive: Archive, batch_id: str, doomed: list[str]
) -> PurgeBatch:
    """The batch, re-read in the deleting transaction; nothing may have changed meanwhile."""
    batch = session.get_one(PurgeBatch, batch_id)
    if batch.state != APPROVED:
        raise StorageError(f"purge batch {batch_id} changed state meanwhile")
    late = held_ids(session, doomed, region=archive.config.node.default_region)
    if late:
        raise StorageError(f"records became held meanwhile: {sorted(late)}")
    return batch


def execute_batch(archive: Archive, batch_id: str, *, now: datetime) -> str | None:
    """Run one approved batch now (grace already checked); returns the certificate id."""
    with archive.index.read() as session:
        batch = session.get_one(PurgeBatch, batch_id)
        plan = plan_batch(session, archive, batch, now)
        cert_id = new_id()
        body = _certificate_body(archive, batch, plan, now, cert_id)
    signature = sign(archive.signing_key, canonical_json(body))
    sealed = archive.vault.store_bytes(
        canonical_json({"certificate": body, "signature": signature}),
        object_id=cert_id,
        retain_until=now + CERTIFICATE_RETENTION,
    )
    doomed = [p["id"] for p in plan.purge]
    objects = [o["object_id"] for p in plan.purge for o in p["objects"]]
    try:
        with archive.index.write() as session:
            batch = _still_approved(session, archive, batch_id, doomed)
            for rid in doomed:
                _destroy_rows(session, rid, now)
                entry = next(p for p in plan.purge if p["id"] == rid)
                audit.append(
                    session,
                    node_id=archive.node_id,
                    actor=ACTOR,
                    action="record.purged",
                    object_type="interaction",
                    object_id=rid,
                    details={
                        "batch": batch_id,
                        "certificate": cert_id,
                        "objects": entry["objects"],
                    },
                )
            for rid, reason in plan.refused.items():
                audit.append(
                    session,
                    node_id=archive.node_id,
                    actor=ACTOR,
                    action="purge.refused",
                    object_type="interaction",
                    object_id=rid,
                    details={"batch": batch_id, "reason": reason},
                )
            for item in session.execute(
                select(PurgeItem).where(PurgeItem.batch_id == batch_id)
            ).scalars():
                item.outcome = (
                    "purged"
                    if item.interaction_id in doomed
                    else f"refused: {plan.refused.get(item.interaction_id)}"
                )
            session.add(
                StoredObject(
                    id=cert_id,
                    interaction_id=None,
                    kind="certificate",
                    media_type="application/json",
                    sha256=sealed.sha256,
                    size=sealed.size,
                    wrapped_key=sealed.wrapped_key,
                    key_id=sealed.key_id,
                    created_at=now,
                    purged_at=None,
                )
            )
            session.add(
                DestructionCertificate(
                    id=cert_id,
                    batch_id=batch_id,
                    issued_at=now,
                    retain_until=now + CERTIFICATE_RETENTION,
                    body=body,
                    signature=signature,
                    public_key=public_key_text(archive.signing_key),
                    object_id=cert_id,
                )
            )
            batch.state = EXECUTED
            batch.executed_at = now
            batch.certificate_id = cert_id
            audit.append(
                session,
                node_id=archive.node_id,
                actor=ACTOR,
                action="purge.executed",
                object_type="purge_batch",
                object_id=batch_id,
                details={"certificate": cert_id, "purged": doomed, "refused": plan.refused},
            )
            emit(
                session,
                node_id=archive.node_id,
                type_=EventType.RETENTION_PURGED,
                data={"batch_id": batch_id, "count": len(doomed)},
            )
    except StorageError:
        archive.vault.store.delete(cert_id)
        raise
    _delete_bytes(archive, objects)
    return cert_id


def _delete_bytes(archive: Archive, object_ids: list[str]) -> None:
    """Delete purged objects' bytes, then check that none can be read any more."""
    store = archive.vault.store
    for object_id in object_ids:
        try:
            store.delete(object_id)
        except (OSError, StorageError) as exc:  # a WORM copy stays, but its key is gone
            log.warning("purged object %s: bytes not deleted (%s); key destroyed", object_id, exc)
    unreadable_check(archive, object_ids)


def unreadable_check(archive: Archive, object_ids: list[str]) -> list[str]:
    """The post-purge check: ids of purged objects that can still be opened (alarmed)."""
    readable = []
    with archive.index.read() as session:
        for object_id in object_ids:
            obj = session.get(StoredObject, object_id)
            try:
                if obj is not None and obj.kind == "manifest":
                    archive.vault.load_self_keyed(object_id)
                elif obj is not None and obj.wrapped_key is not None:
                    archive.vault.load(object_id, obj.wrapped_key, obj.sha256)
                else:
                    continue  # its key is destroyed: whatever bytes remain cannot be opened
            except (NotFound, IntegrityError):
                continue
            readable.append(object_id)
    if readable:
        raise_alarm(
            archive,
            code="purge.readable",
            severity="critical",
            message=f"{len(readable)} purged objects are still readable",
        )
    return readable


def execute_due(archive: Archive, *, now: datetime) -> list[str]:
    """Execute every approved batch whose grace period is over; returns certificate ids.

    Nothing runs while a clock jump suspends purging: `now` may be the jumped clock.
    """
    with archive.index.read() as session:
        if purge_suspended(session, archive.node_id):
            log.warning("purge suspended after a clock jump; `tapeline clock confirm` lifts it")
            return []
        due = list(
            session.execute(
                select(PurgeBatch.id)
                .where(PurgeBatch.state == APPROVED, PurgeBatch.not_before <= now)
                .order_by(PurgeBatch.approved_at)
            ).scalars()
        )
    return [c for c in (execute_batch(archive, b, now=now) for b in due) if c]
