"""The audit chain: every create, access, hold, policy change, export and purge, hash-linked.

Theory of operation: an entry's `hash` is SHA-256 over the previous entry's hash and a canonical
JSON of every other field. Writers first bump the single `audit_head` row (an UPDATE, which takes
the row lock on PostgreSQL and the write lock on SQLite), then read it, so two processes can never
append after the same predecessor: the chain cannot fork. The entry is written in the caller's
transaction, together with the change it describes.

`verify_chain` re-hashes every entry and checks the links and the sequence numbers, so an edited
entry, a deleted non-final entry or a head that does not match the last entry is named. Cutting the
tail (deleting the newest entries and rewinding the head) is caught by signed checkpoints, which
the retention work adds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tapeline.archive.models import AuditEntry, AuditHead, utcnow

GENESIS_HASH = "0" * 64
HEAD_ID = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who acts: an account with roles, or a service of the appliance (`system:recorder`)."""

    name: str
    roles: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    @classmethod
    def system(cls, component: str) -> Actor:
        """The appliance itself acting (filing captured records, running jobs)."""
        return cls(name=f"system:{component}", roles=("system",))


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "ts": entry.ts.isoformat(timespec="milliseconds"),
        "node_id": entry.node_id,
        "actor": entry.actor,
        "roles": list(entry.roles),
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "details": entry.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    """The hash an entry must carry."""
    return hashlib.sha256(prev_hash.encode() + b"|" + _canonical(entry)).hexdigest()


def ensure_head(session: Session) -> None:
    """Create the head row on a new index."""
    if session.get(AuditHead, HEAD_ID) is None:
        session.add(AuditHead(id=HEAD_ID, seq=0, hash=GENESIS_HASH))
        session.flush()


def append(  # noqa: PLR0913  # one argument per audited fact
    session: Session,
    *,
    node_id: str,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    details: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction (the change it records commits with it)."""
    ensure_head(session)
    session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq + 1))
    head = session.execute(select(AuditHead).where(AuditHead.id == HEAD_ID)).scalar_one()
    session.refresh(head)
    entry = AuditEntry(
        seq=head.seq,
        ts=ts or utcnow(),
        node_id=node_id,
        actor=actor.name,
        roles=sorted(actor.roles),
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=details or {},
        prev_hash=head.hash,
        hash="",
    )
    # Round-trip the details through JSON now, so the hash covers exactly what is stored.
    entry.details = json.loads(json.dumps(entry.details, default=str))
    entry.hash = entry_hash(head.hash, entry)
    head.hash = entry.hash
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first place where the chain does not hold."""

    seq: int
    reason: str


def iter_chain_problems(session: Session) -> Iterator[ChainProblem]:
    """Walk the chain in order and yield every break (the first one is what verify names)."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
    for entry in rows:
        if entry.seq != expected_seq:
            yield ChainProblem(expected_seq, f"audit entry {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            yield ChainProblem(
                entry.seq, f"audit entry {entry.seq} does not link to the one before"
            )
        if entry_hash(entry.prev_hash, entry) != entry.hash:
            yield ChainProblem(entry.seq, f"audit entry {entry.seq} was altered")
        prev_hash = entry.hash
        expected_seq = entry.seq + 1
    head = session.get(AuditHead, HEAD_ID)
    last = expected_seq - 1
    if head is not None and (head.seq != last or head.hash != prev_hash):
        yield ChainProblem(head.seq, f"audit head (entry {head.seq}) does not match entry {last}")
