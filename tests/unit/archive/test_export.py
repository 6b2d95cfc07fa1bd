"""Export bundles: contents, signature, offline verification naming the changed file, audit."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import soundfile

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.export import export_records
from tapeline.archive.exportcheck import verify_export
from tapeline.archive.filing import AttachmentIn, Filer, NewInteraction
from tapeline.archive.holds import place_hold
from tapeline.archive.models import AuditEntry
from tapeline.archive.records import Filters
from tapeline.archive.searches import scope_from
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.errors import AccessDenied

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
EVE = Actor(name="eve", roles=("export-officer",))
PARTY = "+447700900123"


def _seed(archive: Archive) -> tuple[str, str, str]:
    call = file_synthetic_call(
        archive, line="+442071230001", counterparty=PARTY, started_at=T0, seconds=1.0
    )
    msg1 = file_synthetic_message(
        archive, line="+442071230002", counterparty=PARTY, started_at=T0, text="<b>buy</b> 100"
    )
    msg2 = file_synthetic_message(
        archive,
        line="+442071230002",
        counterparty=PARTY,
        started_at=T0.replace(minute=45),
        text="done",
        direction="outbound",
    )
    file_synthetic_call(archive, line="+442071230001", counterparty="+12025550143", started_at=T0)
    return call, msg1, msg2


def _export(archive: Archive, path: Path) -> None:
    with path.open("wb") as handle:
        export_records(archive, EVE, Filters(party=PARTY, region="GB"), handle, purpose="SAR 12")


def test_subject_access_export_covers_every_channel_and_verifies(
    index_archive: Archive, tmp_path: Path
) -> None:
    call, msg1, msg2 = _seed(index_archive)
    lena = Actor(name="lena", roles=("legal",))
    place_hold(index_archive, lena, matter="M", scope=scope_from(party=PARTY))
    path = tmp_path / "export.zip"
    _export(index_archive, path)
    report = verify_export(path, expected_key=public_key_text(index_archive.signing_key))
    assert report.ok, report.problems
    assert report.records == 3
    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        assert {
            "index.html", "metadata.json", "metadata.csv", "manifest.json", "manifest.sig",
            "public_key.txt", f"records/{call}/audio.wav", f"records/{call}/audit.json",
            f"records/{msg1}/record.json", "threads/1.html",
        } <= names  # fmt: skip
        assert any(n.startswith(f"records/{call}/objects/") and n.endswith(".flac") for n in names)
        frames, rate = soundfile.read(io.BytesIO(bundle.read(f"records/{call}/audio.wav")))
        assert (rate, frames.shape) == (8000, (8000, 2))
        thread = bundle.read("threads/1.html").decode()
        assert "&lt;b&gt;buy&lt;/b&gt; 100" in thread
        assert thread.index(msg1) < thread.index(msg2)
        assert "<script" not in thread
        trail = json.loads(bundle.read(f"records/{call}/audit.json"))
        assert trail[0]["action"] == "record.filed"
        rows = list(csv.DictReader(io.StringIO(bundle.read("metadata.csv").decode())))
        assert {r["id"] for r in rows} == {call, msg1, msg2}
        assert {r["holds"] for r in rows} == {"M"}
        manifest = json.loads(bundle.read("manifest.json"))
        assert manifest["purpose"] == "SAR 12"
    with index_archive.index.read() as session:
        entry = session.query(AuditEntry).filter(AuditEntry.action == "records.exported").one()
        assert sorted(entry.details["records"]) == sorted([call, msg1, msg2])
        assert entry.actor == "eve"


def test_only_an_export_officer_exports(index_archive: Archive, tmp_path: Path) -> None:
    _seed(index_archive)
    with (tmp_path / "x.zip").open("wb") as handle, pytest.raises(AccessDenied):
        export_records(index_archive, Actor(name="rita", roles=("reviewer",)), Filters(), handle)


def _rewrite(path: Path, name: str, change: bytes) -> None:
    """Replace one member's content (a consistent zip: only the manifest can tell)."""
    with zipfile.ZipFile(path) as old:
        items = [(i, old.read(i.filename)) for i in old.infolist()]
    with zipfile.ZipFile(path, "w") as new:
        for info, data in items:
            new.writestr(info, change if info.filename == name else data)


def test_one_changed_byte_is_named(index_archive: Archive, tmp_path: Path) -> None:
    call, _msg1, _msg2 = _seed(index_archive)
    path = tmp_path / "export.zip"
    _export(index_archive, path)
    wav = f"records/{call}/audio.wav"
    # 1. a byte flipped in place inside the stored WAV: the zip's own CRC no longer matches
    flipped = tmp_path / "flipped.zip"
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as bundle:
        info = bundle.getinfo(wav)
    header = 30 + len(info.filename.encode()) + len(info.extra)
    raw[info.header_offset + header + info.file_size // 2] ^= 0x01
    flipped.write_bytes(bytes(raw))
    report = verify_export(flipped)
    assert report.problems == [f"{wav}: changed (the zip cannot read it back intact)"]
    # 2. a member rewritten consistently: only the signed manifest catches it
    data = bytearray(zipfile.ZipFile(path).read("metadata.csv"))
    data[10] ^= 0x20
    _rewrite(path, "metadata.csv", bytes(data))
    assert verify_export(path).problems == [
        "metadata.csv: changed (SHA-256 differs from the manifest)"
    ]
    # 3. the manifest itself edited: the signature fails
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    manifest["files"]["metadata.csv"]["sha256"] = "0" * 64
    _rewrite(path, "manifest.json", json.dumps(manifest).encode())
    assert "manifest.json: the signature does not verify" in verify_export(path).problems


def test_subject_access_export_by_number_covers_calls_messages_and_whatsapp_calls(
    index_archive: Archive, tmp_path: Path
) -> None:
    call, msg1, msg2 = _seed(index_archive)
    national = file_synthetic_call(  # the same person, dialled in national form
        index_archive, line="+442071230001", counterparty="07700 900123", started_at=T0
    )
    # A WhatsApp call from the same person, known to Meta by a BSUID with the number as alias.
    wa_call = Filer(index_archive, component="test").file(
        NewInteraction(
            channel="whatsapp",
            kind="whatsapp_call",
            direction="inbound",
            started_at=T0.replace(hour=11),
            source_path="whatsapp",
            line_number="+442071230002",
            counterparty="bsuid:GB.1349120865530274191",
            counterparty_aliases=[PARTY],
            attachments=[
                AttachmentIn(kind="webhook_body", media_type="application/json", data=b"{}")
            ],
            outcome="completed",
            sip_call_id="wacid.HBgLMTIwMjU1NTAxNDMVAgARGBIzQjc2",
        )
    )
    file_synthetic_message(  # another person on the same line: not in the copy
        index_archive, line="+442071230002", counterparty="+12025550143", started_at=T0, text="x"
    )
    path = tmp_path / "sar.zip"
    _export(index_archive, path)
    report = verify_export(path, expected_key=public_key_text(index_archive.signing_key))
    assert report.ok, report.problems
    with zipfile.ZipFile(path) as bundle:
        records = json.loads(bundle.read("metadata.json"))
        names = set(bundle.namelist())
    assert {r["id"] for r in records} == {call, msg1, msg2, national, wa_call}
    assert {(r["channel"], r["kind"]) for r in records} == {
        ("voice", "call"), ("whatsapp", "message"), ("whatsapp", "whatsapp_call"),
    }  # fmt: skip
    assert f"records/{wa_call}/record.json" in names
    assert any(n.startswith(f"records/{wa_call}/objects/") for n in names)
