"""The second copy: a replica bucket or folder gets every object, date and hold; verify reads both.

Against Ceph RGW enforcing Object Lock COMPLIANCE (worm-ceph.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.crypto import public_key_text
from tapeline.archive.holds import place_hold
from tapeline.archive.models import Interaction, StoredObject
from tapeline.archive.objects import LocalObjectStore
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.restore import reproduce
from tapeline.archive.s3store import S3ObjectStore
from tapeline.archive.searches import scope_from
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.archive.verify import verify_archive
from tapeline.config import parse_config
from tapeline.errors import ConfigError, StorageError
from tests.conftest import CephRgw, config_dict, tapeline
from tests.tomlwriter import dumps

pytestmark = pytest.mark.s3

LINE = "+442071230001"
PARTY = "+447700900123"
LENA = Actor(name="lena", roles=("legal",))


def _whole(when: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(when.timestamp()), UTC)


def _open(rgw: CephRgw, base: Path, **replica: str) -> Archive:
    data = config_dict(base)
    data["storage"].update(rgw.storage_keys(base, rgw.new_bucket()))
    data["storage"].update(replica)
    return Archive.open(parse_config(data, source="test"))


@pytest.fixture
def replicated(ceph_rgw: CephRgw, tmp_path: Path) -> Iterator[Archive]:
    opened = _open(ceph_rgw, tmp_path, replica_bucket=ceph_rgw.new_bucket())
    try:
        yield opened
    finally:
        opened.close()


def _config_of(archive: Archive) -> dict[str, Any]:
    """The archive's config as a TOML-ready dict (for the CLI in a subprocess)."""
    return archive.config.model_dump(mode="json", exclude_none=True)


def _filed(archive: Archive) -> tuple[str, list[str], datetime]:
    rid = file_synthetic_call(
        archive, line=LINE, counterparty=PARTY, started_at=datetime.now(UTC) - timedelta(days=1)
    )
    with archive.index.read() as session:
        objects = list(
            session.execute(
                select(StoredObject.id).where(StoredObject.interaction_id == rid)
            ).scalars()
        )
        until = session.get_one(Interaction, rid).retain_until
    return rid, objects, until


def test_a_replica_bucket_gets_every_object_with_the_same_lock_and_holds(
    replicated: Archive,
) -> None:
    store = replicated.vault.store
    assert isinstance(store, ReplicatedStore)
    primary, replica = store.primary, store.replica
    assert isinstance(primary, S3ObjectStore)
    assert isinstance(replica, S3ObjectStore)
    assert primary.bucket != replica.bucket
    assert store.replica_mode == f"worm-external:{replica.bucket}"
    _, objects, until = _filed(replicated)
    assert len(objects) >= 2
    for oid in objects:
        for copy in (primary, replica):
            [version] = copy.version_ids(oid)
            assert copy.retention(oid, version) == ("COMPLIANCE", _whole(until))
            assert copy.get(oid) == primary.get(oid)
            with pytest.raises(StorageError, match="deletion refused"):
                copy.delete(oid, version_id=version)
    place_hold(replicated, LENA, matter="BGC", scope=scope_from(party=PARTY))
    for oid in objects:
        for copy in (primary, replica):
            [version] = copy.version_ids(oid)
            assert copy.legal_hold(oid, version) == "ON"
    report = verify_archive(replicated)
    assert report.ok, report.problems


def test_verify_checks_the_replica_copy_too(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    folder = tmp_path / "replica"
    archive = _open(ceph_rgw, tmp_path, replica_path=str(folder))
    try:
        _, objects, _ = _filed(archive)
        assert verify_archive(archive).ok
        local = LocalObjectStore(folder)
        assert sorted(local.ids()) == sorted(objects)
        local.path_of(objects[0]).unlink()  # the second copy loses one object
        report = verify_archive(archive)
        assert report.problems == [
            f"replica copy: object {objects[0]}: object {objects[0]} is missing"
        ]
    finally:
        archive.close()


def test_a_replica_bucket_needs_an_s3_primary(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    data["storage"]["replica_bucket"] = "second-copy"
    with pytest.raises(ConfigError) as refused:
        Archive.open(parse_config(data, source="test"))
    assert refused.value.key == "storage.replica_bucket"


def test_the_replica_and_the_escrowed_keys_alone_reproduce_every_record(
    replicated: Archive, ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    store = replicated.vault.store
    assert isinstance(store, ReplicatedStore)
    replica = store.replica
    assert isinstance(replica, S3ObjectStore)
    filed = {_filed(replicated)[0] for _ in range(2)}
    filed.add(
        file_synthetic_message(
            replicated, line=LINE, counterparty=PARTY, started_at=datetime.now(UTC), text="hi"
        )
    )
    with replicated.index.read() as session:
        hashes = {
            o.id: o.sha256
            for o in session.execute(
                select(StoredObject).where(
                    StoredObject.interaction_id.in_(filed), StoredObject.kind != "manifest"
                )
            ).scalars()
        }
    source = tmp_path / "tapeline.toml"
    source.write_text(dumps(_config_of(replicated)))
    (tmp_path / "pw").write_text("a long escrow passphrase\n")
    escrow = tmp_path / "escrow.keys"
    pw = str(tmp_path / "pw")
    tapeline("key", "export", "-c", str(source), "--out", str(escrow), "--passphrase-file", pw)
    clean = tmp_path / "clean"
    data = config_dict(clean)  # a clean appliance: its own new keys, removed for the import
    data["storage"].update(ceph_rgw.storage_keys(clean, replica.bucket))
    for key in (Path(data["storage"]["key_file"]), Path(data["node"]["signing_key_file"])):
        key.unlink()
    target = clean / "tapeline.toml"
    target.write_text(dumps(data))
    tapeline("key", "import", "-c", str(target), "--in", str(escrow), "--passphrase-file", pw)
    again = tapeline(
        "key", "import", "-c", str(target), "--in", str(escrow), "--passphrase-file", pw,
        check=False,
    )  # fmt: skip
    assert again.returncode != 0
    assert "exists already; not overwritten" in again.stderr
    restored = Archive.open(parse_config(data, source="test"))  # the replica as its primary
    try:
        copies = reproduce(restored.vault.store, restored.vault.archive_key)
        assert public_key_text(restored.signing_key) == public_key_text(replicated.signing_key)
    finally:
        restored.close()
    assert {c.record["id"] for c in copies} == filed
    assert {oid: sha for c in copies for oid, sha in c.objects.items()} == hashes
