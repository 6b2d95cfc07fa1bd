"""Rebuild a clean appliance's index from the replica's record manifests and the escrowed keys.

Theory of operation: every record has a self-keyed manifest (filing.build_manifest) holding the
record's JSON as it was filed and the wrapped keys of its other objects. On a clean appliance
(empty index, keys from `tapeline key import`) `restore_from_replica` reads every manifest from
the source copy, copies each record's objects that the primary lacks, and writes the index rows
the JSON describes: interactions, counterparties, participants, streams, gaps, objects,
recordings, messages and media. It refuses a non-empty index, so it can never mix two archives.

What a manifest does not carry cannot be rebuilt, and is not invented: holds (only their matter
and state are in the JSON, not who placed them or their scope), review flags and retention
extensions made after filing, users, the audit chain and its checkpoints, and the filing-time
`retention_trace`. The restore itself is audited as the first entry of the new chain.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.core import Archive
from tapeline.archive.filing import _counterparty_id  # the one person-matching rule
from tapeline.archive.models import (
    CaptureGap,
    Interaction,
    MediaObject,
    Message,
    Participant,
    Recording,
    StoredObject,
    Stream,
    utcnow,
)
from tapeline.archive.objects import ObjectStore
from tapeline.archive.parties import identifier_for
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.restore import ManifestCopy, manifests_by_record
from tapeline.archive.s3store import S3ObjectStore
from tapeline.archive.vault import Vault
from tapeline.errors import TapelineError


class IndexNotEmptyError(TapelineError):
    """The index already holds records; a restore would mix two archives."""


@dataclass(slots=True)
class RestoreReport:
    """What a restore rebuilt and what the manifests could not carry."""

    records: int = 0
    objects: int = 0
    copied: int = 0
    extended: list[str] = field(default_factory=list)
    held_in_store: list[str] = field(default_factory=list)
    not_restored: list[str] = field(default_factory=list)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _store_lock(source: ObjectStore, manifest_id: str) -> tuple[datetime | None, bool]:
    """A WORM replica's lock on a record's manifest: the latest retain-until and any legal hold.

    Extensions and holds after filing are not in the manifest, but the replica mirrored them onto
    every object's lock (replica.ReplicatedStore), so the lock is the later word on both.
    """
    if not isinstance(source, S3ObjectStore) or not source.worm:
        return None, False
    versions = source.version_ids(manifest_id)
    until = max((source.retention(manifest_id, v)[1] for v in versions), default=None)
    return until, any(source.legal_hold(manifest_id, v) == "ON" for v in versions)


def _source(archive: Archive) -> tuple[ObjectStore, ObjectStore]:
    """(where the manifests are read from, where the appliance keeps its objects)."""
    store = archive.vault.store
    if isinstance(store, ReplicatedStore):
        return store.replica, store.primary
    # No replica configured: the primary itself is the copy (a restored bucket used in place).
    return store, store


def restore_from_replica(archive: Archive, actor: audit.Actor) -> RestoreReport:
    """Rebuild the index of a clean appliance from the replica's manifests.

    Raises:
        IndexNotEmptyError: the index already has interactions or objects.
        IntegrityError: a manifest's object does not open or match its hash.
        NotFound: an object a manifest lists is missing from the replica.
        StorageError: a copy cannot be read or written.
    """
    with archive.index.read() as session:
        count = session.execute(select(func.count()).select_from(StoredObject)).scalar_one()
        count += session.execute(select(func.count()).select_from(Interaction)).scalar_one()
    if count:
        msg = "the index is not empty; restore runs only on a clean appliance"
        raise IndexNotEmptyError(msg)
    source, primary = _source(archive)
    vault = Vault(source, archive.vault.archive_key)
    report = RestoreReport()
    found = manifests_by_record(vault, source)
    region = archive.config.node.default_region
    with archive.index.write() as session:
        for rid in sorted(found):
            versions = found[rid]
            newest = versions[-1]
            _apply_lock(source, newest, report)
            report.copied += _copy_objects(vault, source, primary, versions, newest.body)
            report.objects += _index_record(session, versions, region, vault.archive_key.key_id)
            report.records += 1
        report.not_restored = [
            "users, holds, review flags and retention extensions made after filing",
            "the audit chain, its checkpoints and audit segments",
        ]
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="archive.restored",
            object_type="archive",
            object_id=None,
            details={
                "records": report.records,
                "objects": report.objects,
                "copied": report.copied,
                "source_mode": source.mode,
                "retention_extended_from_store": report.extended,
                # No hold row can be rebuilt (matter, who placed it, scope are not in the store);
                # legal re-places these holds, and the store keeps the copies locked meanwhile.
                "held_in_store": report.held_in_store,
                "not_restored": report.not_restored,
            },
        )
    return report


def _apply_lock(source: ObjectStore, newest: ManifestCopy, report: RestoreReport) -> None:
    """Take a later retain-until from the replica's lock; list records the replica holds."""
    record = newest.body["record"]
    until, held = _store_lock(source, newest.object_id)
    filed_until = _when(record["retain_until"])
    # The store keeps whole seconds, rounded up: only a later date by more than that is news.
    if until is not None and filed_until is not None and until > filed_until + timedelta(seconds=1):
        record["retain_until"] = until.isoformat()
        report.extended.append(str(record["id"]))
    if held:
        report.held_in_store.append(str(record["id"]))


def _copy_objects(
    vault: Vault,
    source: ObjectStore,
    primary: ObjectStore,
    versions: list[ManifestCopy],
    newest: dict[str, Any],
) -> int:
    """Copy what the primary lacks, each checked against its manifest hash before it is kept."""
    if primary is source:
        return 0
    have = set(primary.ids())
    until = _when(newest["record"]["retain_until"])
    copied = 0
    for item in newest["objects"]:
        oid = str(item["object_id"])
        if oid not in have:
            vault.load(oid, base64.b64decode(item["wrapped_key"]), str(item["sha256"]))
            primary.put(oid, [source.get(oid)], retain_until=until)
            copied += 1
    for manifest in versions:
        if manifest.object_id not in have:
            primary.put(manifest.object_id, [source.get(manifest.object_id)], retain_until=until)
            copied += 1
    return copied


def _index_record(session: Session, versions: list[ManifestCopy], region: str, key_id: str) -> int:
    manifest_id, body = versions[-1].object_id, versions[-1].body
    record = body["record"]
    rid = str(record["id"])
    person_id, person_ident = None, None
    party = record["counterparty"]
    if party is not None:
        person_ident = identifier_for(party["identifier"], region)
        aliases = [identifier_for(i, region) for i in party["identifiers"]]
        person_id = _counterparty_id(session, person_ident, party["display_name"], aliases)
    line = record["line"] or {}
    details: dict[str, Any] = {"restored_from_manifest": manifest_id}
    if party is not None and party["display_name"]:
        details["counterparty_name"] = party["display_name"]
    session.add(
        Interaction(
            id=rid,
            channel=record["channel"],
            kind=record["kind"],
            direction=record["direction"],
            started_at=_when(record["started_at"]),
            ended_at=_when(record["ended_at"]),
            duration_ms=record["duration_ms"],
            line_number=line.get("number"),
            line_owner=line.get("owner"),
            line_team=line.get("team"),
            counterparty_id=person_id,
            counterparty_identifier=person_ident,
            outcome=record["outcome"],
            incomplete=record["incomplete"],
            gaps=[],
            tags=list(record["tags"]),
            review_flag=record["review_flag"],
            retention_class=record["retention_class"],
            retain_until=_when(record["retain_until"]),
            source_path=record["source"]["path"],
            source_node=record["source"]["node"],
            sip_call_id=record["source"]["sip_call_id"],
            manifest_object_id=manifest_id,
            filed_at=utcnow(),  # not in the manifest; the restore time is what is known
            details=details,
        )
    )
    session.flush()
    objects = _index_objects(session, rid, body, versions, key_id)
    _index_parts(session, rid, record, region)
    session.flush()
    return objects


def _index_objects(
    session: Session, rid: str, body: dict[str, Any], versions: list[ManifestCopy], key_id: str
) -> int:
    now = utcnow()
    for item in body["objects"]:
        session.add(
            StoredObject(
                id=str(item["object_id"]),
                interaction_id=rid,
                kind=item["kind"],
                media_type=item["media_type"],
                sha256=item["sha256"],
                size=item["size"],
                wrapped_key=base64.b64decode(item["wrapped_key"]),
                key_id=item["key_id"],
                created_at=now,
                purged_at=None,
            )
        )
    for manifest in versions:
        # A manifest's key travels inside the object itself (vault.store_self_keyed), so the
        # row needs none: verify opens manifests self-keyed.
        session.add(
            StoredObject(
                id=manifest.object_id,
                interaction_id=rid,
                kind="manifest",
                media_type="application/json",
                sha256=manifest.sha256,
                size=manifest.size,
                wrapped_key=None,
                key_id=key_id,
                created_at=now,
                purged_at=None,
            )
        )
    session.flush()
    return len(body["objects"]) + len(versions)


def _index_parts(session: Session, rid: str, record: dict[str, Any], region: str) -> None:
    for p in record["participants"]:
        session.add(
            Participant(
                interaction_id=rid,
                role=p["role"],
                identifier=identifier_for(p["identifier"], region),
                display_name=p["display_name"],
            )
        )
    for s in record["streams"]:
        session.add(
            Stream(
                interaction_id=rid,
                label=s["label"],
                ssrc=s["ssrc"],
                codec=s["codec"],
                channel=s["channel"],
                quality=s["quality"],
            )
        )
    for g in record["gaps"]:
        session.add(
            CaptureGap(
                interaction_id=rid, start_ms=g["start_ms"], end_ms=g["end_ms"], reason=g["reason"]
            )
        )
    rec = record["recording"]
    if rec is not None:
        session.add(
            Recording(
                interaction_id=rid,
                object_id=rec["object_id"],
                format=rec["format"],
                sample_rate=rec["sample_rate"],
                channels=rec["channels"],
                duration_ms=rec["duration_ms"],
                channel_map=rec["channel_map"],
            )
        )
    msg = record["message"]
    if msg is not None:
        session.add(
            Message(
                interaction_id=rid,
                wamid=msg["wamid"],
                type=msg["type"],
                text=msg["text"],
                status=msg["status"],
                status_at=_when(msg["status_at"]),
                errors=msg["errors"],
            )
        )
        for m in msg["media"]:
            session.add(
                MediaObject(
                    interaction_id=rid,
                    object_id=m["object_id"],
                    media_id=m["media_id"],
                    mime_type=m["mime_type"],
                    sha256=m["sha256"],
                    state=m["state"],
                )
            )
