"""Export bundles for examiners: originals, WAV, WhatsApp thread pages, metadata, audit trails.

Layout of the zip (C-24, 17a-4(f)(2)(iv)):

    index.html                      every exported record, opens in any browser
    metadata.json, metadata.csv     the records (the JSON shape of DESIGN §7) and a flat table
    records/<id>/record.json        one record
    records/<id>/audit.json         its audit trail (hash-chained entries, as stored)
    records/<id>/objects/<oid>.ext  original content (FLAC/Ogg recording, media, attachments)
    records/<id>/audio.wav          playable audio of a call
    threads/<n>.html                a WhatsApp conversation (line + counterparty), self-contained
    manifest.json                   SHA-256 and size of every file above, signed
    manifest.sig, public_key.txt    Ed25519 signature of manifest.json and the appliance key

`exportcheck.verify_export` checks it offline. Every export is audited.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import soundfile
from sqlalchemy import select
from sqlalchemy.orm import Session

from tapeline.archive import audit
from tapeline.archive.access import Action, require
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.ids import new_id
from tapeline.archive.models import AuditEntry, StoredObject, utcnow
from tapeline.archive.records import Filters, iso, search
from tapeline.archive.signing import canonical_json, sign
from tapeline.errors import TapelineError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.txt"
UNSIGNED = frozenset({MANIFEST, SIGNATURE})
_EXTENSIONS = {
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "application/json": ".json",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "application/xml": ".xml",
}
_CSV_FIELDS = (
    "id", "channel", "kind", "direction", "started_at", "ended_at", "duration_ms", "line",
    "owner", "team", "counterparty", "text", "retention_class", "retain_until", "holds",
    "recording_sha256",
)  # fmt: skip
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em}"
    ".in{background:#eef;margin:.4em 30% .4em 0;padding:.5em;border-radius:.5em}"
    ".out{background:#efe;margin:.4em 0 .4em 30%;padding:.5em;border-radius:.5em}"
    ".meta{color:#555;font-size:.8em}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    """What an export wrote."""

    export_id: str
    records: int
    files: int
    manifest_sha256: str


class _Bundle:
    """A zip being written, with the manifest entry of every file."""

    def __init__(self, target: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(target, "w")
        self.files: dict[str, dict[str, Any]] = {}

    def add(self, path: str, data: bytes, *, compress: bool = True) -> None:
        self.files[path] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.zip.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data, mode)


def _audit_trail(session: Session, record_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AuditEntry).where(AuditEntry.object_id == record_id).order_by(AuditEntry.seq)
    ).scalars()
    return [
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
        for e in rows
    ]


def _wav(data: bytes) -> bytes:
    frames, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    out = io.BytesIO()
    soundfile.write(out, frames, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _add_record(
    archive: Archive, session: Session, bundle: _Bundle, record: dict[str, Any]
) -> dict[str, str]:
    """Write one record's files; returns link targets for the index page."""
    rid = record["id"]
    base = f"records/{rid}"
    links = {"record": f"{base}/record.json"}
    bundle.add(f"{base}/record.json", json.dumps(record, indent=2, sort_keys=True).encode())
    trail = _audit_trail(session, rid)
    bundle.add(f"{base}/audit.json", json.dumps(trail, indent=2, sort_keys=True).encode())
    objects = session.execute(
        select(StoredObject)
        .where(StoredObject.interaction_id == rid, StoredObject.purged_at.is_(None))
        .where(StoredObject.kind != "manifest")
        .order_by(StoredObject.id)
    ).scalars()
    for obj in objects:
        if obj.wrapped_key is None:
            continue
        data = archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)
        path = f"{base}/objects/{obj.id}{_EXTENSIONS.get(obj.media_type, '.bin')}"
        bundle.add(path, data, compress=not obj.media_type.startswith("audio/"))
        links.setdefault(obj.kind, path)
        if obj.kind == "recording":
            bundle.add(f"{base}/audio.wav", _wav(data), compress=False)
            links["wav"] = f"{base}/audio.wav"
    return links


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "</body></html>"
    ).encode()


def _threads(records: list[dict[str, Any]], links: dict[str, dict[str, str]]) -> dict[str, bytes]:
    """One self-contained page per WhatsApp conversation (line + counterparty), oldest first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record["channel"] != "whatsapp" or record["message"] is None:
            continue
        key = (
            (record["line"] or {}).get("number", ""),
            (record["counterparty"] or {}).get("identifier", ""),
        )
        groups.setdefault(key, []).append(record)
    pages = {}
    for n, ((line, party), items) in enumerate(sorted(groups.items()), start=1):
        parts = []
        for record in sorted(items, key=lambda r: r["started_at"]):
            msg = record["message"]
            side = "out" if record["direction"] == "outbound" else "in"
            text = html.escape(msg.get("text") or f"[{msg.get('type')}]")
            media = links[record["id"]].get("media")
            attach = f' <a href="../{html.escape(media)}">attachment</a>' if media else ""
            parts.append(
                f'<div class="{side}">{text}{attach}<div class="meta">{record["started_at"]} '
                f"· {html.escape(str(msg.get('status')))} · {record['id']}</div></div>"
            )
        pages[f"threads/{n}.html"] = _page(f"WhatsApp: {line} ↔ {party}", "".join(parts))
    return pages


def _index(
    records: list[dict[str, Any]], links: dict[str, dict[str, str]], threads: list[str]
) -> bytes:
    rows = []
    for r in records:
        got = links[r["id"]]
        audio = f'<audio controls src="{got["wav"]}"></audio>' if "wav" in got else ""
        rows.append(
            f'<tr><td><a href="{got["record"]}">{r["id"]}</a></td><td>{r["started_at"]}</td>'
            f"<td>{r['channel']}/{r['kind']}</td>"
            f"<td>{html.escape(str((r['line'] or {}).get('owner')))}</td>"
            f"<td>{html.escape(str((r['counterparty'] or {}).get('identifier')))}</td>"
            f"<td>{audio}</td></tr>"
        )
    thread_links = "".join(f'<li><a href="{t}">{t}</a></li>' for t in threads)
    body = (
        "<table><tr><th>record</th><th>start (UTC)</th><th>type</th><th>line owner</th>"
        f"<th>counterparty</th><th>audio</th></tr>{''.join(rows)}</table>"
        f"<h2>WhatsApp threads</h2><ul>{thread_links}</ul>"
        "<p>Check this bundle with <code>tapeline verify-export</code>: manifest.json lists the "
        "SHA-256 of every file and manifest.sig is its Ed25519 signature (public_key.txt).</p>"
    )
    return _page("Tapeline export", body)


def _csv(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for r in records:
        line = r["line"] or {}
        writer.writerow(
            {
                "id": r["id"],
                "channel": r["channel"],
                "kind": r["kind"],
                "direction": r["direction"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "duration_ms": r["duration_ms"],
                "line": line.get("number"),
                "owner": line.get("owner"),
                "team": line.get("team"),
                "counterparty": (r["counterparty"] or {}).get("identifier"),
                "text": (r["message"] or {}).get("text"),
                "retention_class": r["retention_class"],
                "retain_until": r["retain_until"],
                "holds": ";".join(h["matter"] for h in r["holds"]),
                "recording_sha256": (r["recording"] or {}).get("sha256"),
            }
        )
    return out.getvalue().encode()


def export_records(  # noqa: PLR0913  # who, what, where, why and when
    archive: Archive,
    actor: audit.Actor,
    filters: Filters,
    target: IO[bytes],
    *,
    purpose: str | None = None,
    now: datetime | None = None,
) -> ExportSummary:
    """Write an export bundle of the records matching `filters` to `target`; audited.

    Raises:
        AccessDenied: the actor is not an export officer.
        TapelineError: no record matches.
        StorageError: an object could not be read (IntegrityError when it changed).
    """
    require(actor, Action.EXPORT)
    moment = now or utcnow()
    export_id = new_id()
    with archive.index.write() as session:
        records = search(session, filters)
        if not records:
            raise TapelineError("no record matches the filters: nothing to export")
        bundle = _Bundle(target)
        # Closed on failure too (close is idempotent): a zip left open would later write its
        # directory into the caller's file after it was closed, from the garbage collector.
        with contextlib.closing(bundle.zip):
            links = {r["id"]: _add_record(archive, session, bundle, r) for r in records}
            threads = _threads(records, links)
            for path, page in threads.items():
                bundle.add(path, page)
            bundle.add("index.html", _index(records, links, sorted(threads)))
            bundle.add("metadata.json", json.dumps(records, indent=2, sort_keys=True).encode())
            bundle.add("metadata.csv", _csv(records))
            key_text = public_key_text(archive.signing_key)
            bundle.add(PUBLIC_KEY, key_text.encode() + b"\n")
            manifest = {
                "schema": "tapeline.export/1",
                "export_id": export_id,
                "created_at": iso(moment),
                "node_id": archive.node_id,
                # where the originals live: an examiner sees whether they came from WORM storage
                "storage_mode": archive.storage_mode,
                "exported_by": actor.name,
                "purpose": purpose,
                "records": [r["id"] for r in records],
                "public_key": key_text,
                "files": bundle.files,
            }
            manifest_bytes = canonical_json(manifest)
            bundle.zip.writestr(MANIFEST, manifest_bytes)
            bundle.zip.writestr(SIGNATURE, sign(archive.signing_key, manifest_bytes) + "\n")
            bundle.zip.close()
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        audit.append(
            session,
            node_id=archive.node_id,
            actor=actor,
            action="records.exported",
            object_type="export",
            object_id=export_id,
            details={
                "records": manifest["records"],
                "manifest_sha256": digest,
                "purpose": purpose,
            },
        )
    return ExportSummary(
        export_id=export_id, records=len(records), files=len(bundle.files), manifest_sha256=digest
    )
