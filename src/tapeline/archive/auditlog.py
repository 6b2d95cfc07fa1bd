"""Reading the audit chain (auditor, admin): filtered entries and the chain's verification status.

Looking at the audit log is itself an access, so each read appends an `audit.viewed` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tapeline.archive import audit
from tapeline.archive.access import Action, require
from tapeline.archive.core import Archive
from tapeline.archive.models import AuditEntry, AuditHead
from tapeline.archive.records import iso

PAGE_SIZE = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilters:
    """Audit log filters; every one is optional and they combine with AND."""

    actor: str | None = None
    action: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = PAGE_SIZE
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainStatus:
    """Whether the chain verifies, and the first break when it does not."""

    ok: bool
    entries: int
    first_problem: str | None


def entries(archive: Archive, actor: audit.Actor, filters: AuditFilters) -> list[dict[str, Any]]:
    """Matching entries, newest first (the read is audited).

    Raises:
        AccessDenied: the actor is neither auditor nor admin.
    """
    require(actor, Action.READ_AUDIT)
    query = select(AuditEntry)
    if filters.actor:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.action:
        query = query.where(AuditEntry.action.startswith(filters.action, autoescape=True))
    if filters.object_id:
        query = query.where(AuditEntry.object_id == filters.object_id)
    if filters.since:
        query = query.where(AuditEntry.ts >= filters.since)
    if filters.until:
        query = query.where(AuditEntry.ts < filters.until)
    query = query.order_by(AuditEntry.seq.desc()).limit(filters.limit).offset(filters.offset)
    with archive.index.write() as session:
        rows = [
            {
                "seq": e.seq,
                "ts": iso(e.ts),
                "node_id": e.node_id,
                "actor": e.actor,
                "roles": list(e.roles),
                "action": e.action,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "details": e.details,
                "hash": e.hash,
            }
            for e in session.execute(query).scalars()
        ]
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="audit.viewed",
            object_type="audit",
            object_id=None,
            details={"results": len(rows)},
        )
    return rows


def chain_status(archive: Archive, actor: audit.Actor) -> ChainStatus:
    """Re-hash the whole chain and report the first break.

    Raises:
        AccessDenied: the actor is neither auditor nor admin.
    """
    require(actor, Action.READ_AUDIT)
    with archive.index.read() as session:
        problem = next(audit.iter_chain_problems(session), None)
        head = session.get(AuditHead, audit.HEAD_ID)
    return ChainStatus(
        ok=problem is None,
        entries=head.seq if head else 0,
        first_problem=problem.reason if problem else None,
    )
