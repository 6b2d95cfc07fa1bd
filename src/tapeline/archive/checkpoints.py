"""Signed audit checkpoints: a Merkle root over new entries, signed, kept and sent off the box.

RFC 6962 §2.1 hashing: a leaf is SHA-256(0x00 || entry hash), a node SHA-256(0x01 || left ||
right), and a tree of n > 1 leaves splits at the largest power of two below n. Each checkpoint
covers the entries after the previous one up to the head, and is signed with the appliance key.
The chain alone cannot show that its newest entries were cut off (with the head rewound); a
checkpoint can, and a copy written to `integrity.checkpoint_target` (a file, the local syslog, or
a remote syslog collector over UDP, ideally on another box) still can when the checkpoint rows
were cut as well.

On a WORM store (S3 Object Lock) each checkpoint is also sealed as an `audit-segment` object: the
signed checkpoint and the entries it covers, written COMPLIANCE-locked (the store's default, the
longest retention class) before the checkpoint row commits. Whoever can rewrite the index still
cannot rewrite or erase that segment of the audit trail before it expires.
"""

from __future__ import annotations

import hashlib
import json
import socket
import syslog
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tapeline.archive.audit import HEAD_ID
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.models import AuditCheckpoint, AuditEntry, AuditHead, StoredObject
from tapeline.archive.records import iso
from tapeline.archive.signing import canonical_json, sign, verify
from tapeline.errors import StorageError

LEAF = b"\x00"
NODE = b"\x01"
FILE_PREFIX = "file:"
SYSLOG_PREFIX = "syslog://"
SYSLOG_PORT = 514


def merkle_root(leaves: list[bytes]) -> str:
    """The RFC 6962 Merkle tree hash of the leaves (hex); the empty tree hashes ''."""

    def mth(items: list[bytes]) -> bytes:
        if not items:
            return hashlib.sha256(b"").digest()
        if len(items) == 1:
            return hashlib.sha256(LEAF + items[0]).digest()
        k = 1 << ((len(items) - 1).bit_length() - 1)
        return hashlib.sha256(NODE + mth(items[:k]) + mth(items[k:])).digest()

    return mth(leaves).hex()


def _leaves(session: Session, seq_from: int, seq_to: int) -> list[AuditEntry]:
    return list(
        session.execute(
            select(AuditEntry)
            .where(AuditEntry.seq >= seq_from, AuditEntry.seq <= seq_to)
            .order_by(AuditEntry.seq)
        ).scalars()
    )


def _body(row: AuditCheckpoint) -> dict[str, Any]:
    return {
        "node_id": row.node_id,
        "seq_from": row.seq_from,
        "seq_to": row.seq_to,
        "root": row.root,
        "head_hash": row.head_hash,
        "created_at": iso(row.created_at),
    }


def write_checkpoint(archive: Archive, *, now: datetime) -> dict[str, Any] | None:
    """Checkpoint the entries since the last checkpoint; None when there are none."""
    with archive.index.write() as session:
        last = session.execute(select(func.max(AuditCheckpoint.seq_to))).scalar_one() or 0
        head = session.get(AuditHead, HEAD_ID)
        if head is None or head.seq <= last:
            return None
        entries = _leaves(session, last + 1, head.seq)
        row = AuditCheckpoint(
            node_id=archive.node_id,
            seq_from=last + 1,
            seq_to=head.seq,
            root=merkle_root([e.hash.encode() for e in entries]),
            head_hash=head.hash,
            created_at=now,
            signature="",
            public_key=public_key_text(archive.signing_key),
        )
        row.signature = sign(archive.signing_key, canonical_json(_body(row)))
        session.add(row)
        session.flush()
        published = {**_body(row), "signature": row.signature, "public_key": row.public_key}
        if archive.vault.store.worm:
            _seal_segment(archive, session, published, entries, now)
    _publish(archive.config.integrity.checkpoint_target, published)
    return published


def syslog_address(target: str) -> tuple[str, int] | None:
    """(host, port) of a `syslog://HOST[:PORT]` target, None for any other target."""
    if not target.startswith(SYSLOG_PREFIX):
        return None
    parts = urlsplit(target)
    if not parts.hostname:
        raise ValueError(f"{target}: no host")
    return parts.hostname, parts.port or SYSLOG_PORT


def syslog_datagram(checkpoint: dict[str, Any], *, hostname: str) -> bytes:
    """One RFC 5424 message (user.notice, MSGID `checkpoint`) carrying the checkpoint JSON."""
    line = json.dumps(checkpoint, sort_keys=True)
    stamp = checkpoint.get("created_at") or "-"
    return f"<13>1 {stamp} {hostname} tapeline - checkpoint - {line}".encode()


def _send_syslog(address: tuple[str, int], checkpoint: dict[str, Any]) -> None:
    """Send a checkpoint to a remote syslog over UDP (RFC 5426), which root here cannot edit."""
    datagram = syslog_datagram(checkpoint, hostname=socket.gethostname() or "-")
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, address)
    except OSError as exc:
        raise StorageError(f"cannot send checkpoint to syslog {address}: {exc}") from exc


def _seal_segment(
    archive: Archive,
    session: Session,
    checkpoint: dict[str, Any],
    entries: list[AuditEntry],
    now: datetime,
) -> None:
    """Store the checkpoint and its entries as one locked object, indexed like a certificate."""
    body = {
        "schema": "tapeline.audit-segment/1",
        "checkpoint": checkpoint,
        "entries": [
            {
                "seq": e.seq,
                "ts": iso(e.ts),
                "node_id": e.node_id,
                "actor": e.actor,
                "roles": e.roles,
                "action": e.action,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "details": e.details,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
            for e in entries
        ],
    }
    sealed = archive.vault.store_bytes(canonical_json(body))
    session.add(
        StoredObject(
            id=sealed.object_id,
            interaction_id=None,
            kind="audit-segment",
            media_type="application/json",
            sha256=sealed.sha256,
            size=sealed.size,
            wrapped_key=sealed.wrapped_key,
            key_id=sealed.key_id,
            created_at=now,
            purged_at=None,
        )
    )


def _publish(target: str, checkpoint: dict[str, Any]) -> None:
    """Copy a checkpoint off the index: appended to a file, or one syslog line."""
    line = json.dumps(checkpoint, sort_keys=True)
    address = syslog_address(target)
    if target == "syslog":
        syslog.syslog(syslog.LOG_NOTICE, f"tapeline-checkpoint {line}")
    elif address is not None:
        _send_syslog(address, checkpoint)
    elif target.startswith(FILE_PREFIX):
        path = Path(target.removeprefix(FILE_PREFIX))
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            raise StorageError(f"cannot write checkpoint to {path}: {exc.strerror}") from exc


def _check_one(
    session: Session, body: dict[str, Any], signature: str, key: str, where: str
) -> list[str]:
    seq_from, seq_to = int(body["seq_from"]), int(body["seq_to"])
    if not verify(key, canonical_json(body), signature):
        return [f"{where} (entries {seq_from}..{seq_to}): signature does not verify"]
    entries = _leaves(session, seq_from, seq_to)
    if len(entries) != seq_to - seq_from + 1:
        left = f"{len(entries)} of {seq_to - seq_from + 1} left"
        return [f"audit entries {seq_from}..{seq_to} covered by {where} are missing ({left})"]
    if merkle_root([e.hash.encode() for e in entries]) != body["root"]:
        return [f"audit entries {seq_from}..{seq_to} do not match {where}"]
    return []


def checkpoint_problems(session: Session, *, public_key: str, target: str) -> list[str]:
    """Every checkpoint (index and external copy) checked against the chain."""
    problems: list[str] = []
    known: set[tuple[int, str]] = set()
    for row in session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars():
        known.add((row.seq_to, row.root))
        where = f"checkpoint {row.id}"
        if row.public_key != public_key:
            problems.append(f"{where}: signed by another key ({row.public_key})")
        problems += _check_one(session, _body(row), row.signature, row.public_key, where)
    if target.startswith(FILE_PREFIX):
        path = Path(target.removeprefix(FILE_PREFIX))
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        for n, line in enumerate(lines, start=1):
            copy = json.loads(line)
            signature = copy.pop("signature")
            key = copy.pop("public_key")
            where = f"checkpoint in {path} line {n}"
            if (int(copy["seq_to"]), copy["root"]) not in known:
                problems.append(f"{where}: missing from the index")
            problems += _check_one(session, copy, signature, key, where)
    return problems
