"""A clean appliance restored from the replica and the escrowed keys alone (issue 9).

Appliance A files calls and WhatsApp messages through the real filing path with a replica folder;
its keys are exported; appliance B (new index, no objects, no keys of its own) imports them and
runs `tapeline restore --from-replica` against A's replica. B's `verify` passes and B's
`query --json` equals A's, except the counterparty's `id`, a row number local to each index.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tapeline.archive.amend import Amender
from tapeline.archive.audit import Actor
from tapeline.archive.cdr import reconcile
from tapeline.archive.core import Archive
from tapeline.archive.filing import MediaIn
from tapeline.archive.holds import place_hold
from tapeline.archive.models import AuditEntry, Interaction
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.searches import scope_from
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.config import parse_config
from tests.conftest import CephRgw, PostgresServer, config_dict, tapeline
from tests.tomlwriter import dumps

LINE = "+442071230001"
PARTY = "+447700900123"
HELD_PARTY = "+447700900999"
LENA = Actor(name="lena", roles=("legal",))
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _write(base: Path, data: dict[str, Any]) -> Path:
    path = base / "tapeline.toml"
    path.write_text(dumps(data))
    return path


def _reviewer(base: Path, config: Path) -> list[str]:
    """A reviewer account (reading records needs one); returns the flags that act as it."""
    pw = base / "pw-rita"
    pw.write_text("rita long password 1234\n")
    admin_pw = base / "pw-ada"
    admin_pw.write_text("ada long password 1234\n")
    c = str(config)
    tapeline("user", "add", "ada", "--role", "admin", "-c", c, "--password-file", str(admin_pw))
    tapeline(
        "user", "add", "rita", "--role", "reviewer", "-c", c, "--password-file", str(pw),
        "--as", "ada", "--as-password-file", str(admin_pw),
    )  # fmt: skip
    return ["--as", "rita", "--password-file", str(pw)]


def _records(config: Path, actor: list[str]) -> dict[str, dict[str, Any]]:
    out = tapeline("query", "-c", str(config), *actor, "--json").stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    for record in records:
        if record["counterparty"] is not None:
            record["counterparty"].pop("id")  # the index's own row number for the person
    return {r["id"]: r for r in records}


def _file_on_a(data: dict[str, Any]) -> set[str]:
    archive = Archive.open(parse_config(data, source="test"))
    try:
        filed = {
            file_synthetic_call(
                archive,
                line=LINE,
                counterparty=PARTY,
                started_at=T0 + timedelta(minutes=i),
                tags=["desk"],
                quality={"lost": i},
            )
            for i in range(2)
        }
        filed.add(
            file_synthetic_message(
                archive,
                line=LINE,
                counterparty=PARTY,
                started_at=T0 + timedelta(hours=1),
                text="see you at 10",
                counterparty_name="Carol Client",
                media=[
                    MediaIn(data=b"\x89PNG not really", media_id="m1", mime_type="image/png"),
                    MediaIn(data=None, media_id="m2", mime_type="image/jpeg"),
                ],
            )
        )
        filed.add(
            file_synthetic_message(
                archive,
                line="+442071230002",
                counterparty=HELD_PARTY,
                started_at=T0 + timedelta(hours=2),
                text="sent",
                direction="outbound",
                status="delivered",
            )
        )
        late = file_synthetic_message(
            archive,
            line=LINE,
            counterparty=PARTY,
            started_at=T0 + timedelta(hours=3),
            text="photo follows",
            media=[MediaIn(data=None, media_id="m3", mime_type="image/png", pending=True)],
        )
        filed.add(late)
        # The media arrives later: the record gets a second manifest listing it (amend.py).
        amender = Amender(archive)
        [(row, *_)] = amender.pending_media()
        assert amender.store_media(row, b"late bytes", mime_type="image/png", expected=None) == (
            "stored"
        )
    finally:
        archive.close()
    return filed


def _object_ids(data: dict[str, Any]) -> set[str]:
    """The object ids in the primary store of the appliance `data` configures."""
    archive = Archive.open(parse_config(data, source="test"))
    try:
        return set(archive.vault.store.ids())
    finally:
        archive.close()


def _clean(base: Path, database_url: str | None = None) -> dict[str, Any]:
    """A new appliance: empty index and primary, and no keys (they come from the escrow)."""
    data = config_dict(base, database_url)
    data["node"]["id"] = "restored-node"
    for key in (Path(data["storage"]["key_file"]), Path(data["node"]["signing_key_file"])):
        key.unlink()
    return data


def test_a_clean_appliance_restored_from_a_replica_folder_reproduces_every_record(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    data_a = config_dict(a)
    data_a["storage"]["replica_path"] = str(a / "replica")
    data_b = _clean(b)
    data_b["storage"]["replica_path"] = str(a / "replica")
    _restore_and_compare(tmp_path, data_a, data_b)


@pytest.mark.postgres
def test_a_restore_into_a_postgresql_index_reproduces_every_record(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    data_a = config_dict(a, postgres.new_database())
    data_a["storage"]["replica_path"] = str(a / "replica")
    data_b = _clean(b, postgres.new_database())
    data_b["storage"]["replica_path"] = str(a / "replica")
    _restore_and_compare(tmp_path, data_a, data_b)


@pytest.mark.s3
def test_a_clean_appliance_restored_from_a_replica_bucket_reproduces_every_record(
    tmp_path: Path, ceph_rgw: CephRgw
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    replica = ceph_rgw.new_bucket()
    data_a = config_dict(a)
    data_a["storage"].update(ceph_rgw.storage_keys(a, ceph_rgw.new_bucket()))
    data_a["storage"]["replica_bucket"] = replica
    data_b = _clean(b)
    data_b["storage"].update(ceph_rgw.storage_keys(b, ceph_rgw.new_bucket()))
    data_b["storage"]["replica_bucket"] = replica
    _restore_and_compare(tmp_path, data_a, data_b, worm=True)


def _restore_entry(data: dict[str, Any]) -> AuditEntry:
    """The one audit entry the restore wrote on the appliance `data` configures."""
    archive = Archive.open(parse_config(data, source="test"))
    try:
        with archive.index.read() as session:
            return session.execute(
                select(AuditEntry).where(AuditEntry.action == "archive.restored")
            ).scalar_one()
    finally:
        archive.close()


def _hold(data: dict[str, Any], party: str) -> None:
    archive = Archive.open(parse_config(data, source="test"))
    try:
        place_hold(archive, LENA, matter="FCA-17", scope=scope_from(party=party))
    finally:
        archive.close()


def _restore_and_compare(
    tmp_path: Path, data_a: dict[str, Any], data_b: dict[str, Any], *, worm: bool = False
) -> None:
    """File on A, restore on B from A's replica (as `data_b` names it), and compare.

    On a WORM replica one record is also held on A after filing: the hold is not in its
    manifest, the replica's legal hold shows it, and B names the record for legal to hold again.
    """
    a, b = tmp_path / "a", tmp_path / "b"
    config_a = _write(a, data_a)
    filed = _file_on_a(data_a)
    if worm:
        _hold(data_a, HELD_PARTY)
    reader_a = _reviewer(a, config_a)
    records_a = _records(config_a, reader_a)
    assert set(records_a) == filed
    held = {rid for rid, r in records_a.items() if r["holds"]}
    assert len(held) == (1 if worm else 0)
    for record in records_a.values():
        record["holds"] = []  # hold rows are not rebuilt (the report names the held records)

    (tmp_path / "escrow-pw").write_text("a long escrow passphrase\n")
    escrow, pw = tmp_path / "escrow.keys", str(tmp_path / "escrow-pw")
    tapeline("key", "export", "-c", str(config_a), "--out", str(escrow), "--passphrase-file", pw)

    config_b = _write(b, data_b)
    tapeline("key", "import", "-c", str(config_b), "--in", str(escrow), "--passphrase-file", pw)
    out = tapeline("restore", "-c", str(config_b), "--from-replica").stdout
    assert f"records restored: {len(filed)}\n" in out
    assert "not restored: users, holds" in out
    assert "taken from the replica's lock" not in out  # whole-second rounding is not an extension
    for rid in held:
        assert f"under a legal hold in the replica; place the hold again: {rid}\n" in out
    # Every object of A's records (and their manifests) is now in B's own primary store.
    restored = Archive.open(parse_config(data_b, source="test"))
    try:
        primary_b = set(restored.vault.store.ids())
    finally:
        restored.close()
    a_objects = _object_ids(data_a)
    assert a_objects <= primary_b

    again = tapeline("restore", "-c", str(config_b), "--from-replica", check=False)
    assert again.returncode != 0
    assert "index is not empty" in again.stderr

    verified = tapeline("verify", "-c", str(config_b), check=False)
    assert verified.returncode == 0, verified.stdout
    assert "archive ok" in verified.stdout

    records_b = _records(config_b, _reviewer(b, config_b))
    assert records_b == records_a
    states = {
        r["message"]["text"]: [m["state"] for m in r["message"]["media"]]
        for r in records_b.values()
        if r["message"]
    }
    assert states["see you at 10"] == ["stored", "failed"]
    assert states["photo follows"] == ["stored"]  # from the record's second, newer manifest

    entry = _restore_entry(data_b)
    assert entry.actor == "system:restore"
    assert entry.details["records"] == len(filed)
    assert entry.details["copied"] == len(a_objects)
    assert entry.details["held_in_store"] == sorted(held)


def test_the_completeness_report_shows_each_records_replica_state(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    data["storage"]["replica_path"] = str(tmp_path / "replica")
    archive = Archive.open(parse_config(data, source="test"))
    try:
        kept, lost = (
            file_synthetic_call(
                archive, line=LINE, counterparty=PARTY, started_at=T0 + timedelta(minutes=i)
            )
            for i in range(2)
        )
        later = file_synthetic_call(
            archive, line=LINE, counterparty=PARTY, started_at=T0 + timedelta(days=1)
        )
        store = archive.vault.store
        assert isinstance(store, ReplicatedStore)
        with archive.index.read() as session:
            manifest = session.get_one(Interaction, lost).manifest_object_id
        assert manifest is not None
        store.replica.delete(manifest)  # the second copy loses one object of one record
        report = reconcile(archive, Actor(name="rmo", roles=("records-manager",)), T0.date())
    finally:
        archive.close()
    assert report["replica"] == sorted(
        [
            {"interaction_id": kept, "replica": "present"},
            {"interaction_id": lost, "replica": "missing"},
        ],
        key=lambda r: r["interaction_id"],
    )
    assert later not in {r["interaction_id"] for r in report["replica"]}
    without = config_dict(tmp_path / "plain")
    plain = Archive.open(parse_config(without, source="test"))
    try:
        file_synthetic_call(plain, line=LINE, counterparty=PARTY, started_at=T0)
        assert (
            reconcile(plain, Actor(name="rmo", roles=("records-manager",)), T0.date())["replica"]
            == []
        )
    finally:
        plain.close()


def test_a_copy_of_the_replica_used_as_the_primary_is_restored_in_place(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    data_a = config_dict(a)
    data_a["storage"]["replica_path"] = str(a / "replica")
    filed = _file_on_a(data_a)
    (tmp_path / "escrow-pw").write_text("a long escrow passphrase\n")
    escrow, pw = tmp_path / "escrow.keys", str(tmp_path / "escrow-pw")
    tapeline(
        "key", "export", "-c", str(_write(a, data_a)), "--out", str(escrow),
        "--passphrase-file", pw,
    )  # fmt: skip
    data_b = _clean(b)
    shutil.copytree(a / "replica", data_b["storage"]["path"])  # e.g. carried over on a disk
    config_b = _write(b, data_b)
    tapeline("key", "import", "-c", str(config_b), "--in", str(escrow), "--passphrase-file", pw)
    out = tapeline("restore", "-c", str(config_b), "--from-replica").stdout
    assert f"records restored: {len(filed)}\n" in out
    assert "objects copied to the primary: 0\n" in out
    verified = tapeline("verify", "-c", str(config_b), check=False)
    assert verified.returncode == 0, verified.stdout
