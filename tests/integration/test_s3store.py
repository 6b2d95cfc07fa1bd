"""S3ObjectStore against a real Ceph RGW that enforces Object Lock COMPLIANCE (worm-ceph.md)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tapeline.archive.core import Archive, check_semantics
from tapeline.archive.s3store import DEFAULT_RETENTION, PASSED_DATE_FLOOR, S3ObjectStore
from tapeline.config import EX_CONFIG, parse_config
from tapeline.errors import ConfigError, NotFound, StorageError
from tests.conftest import CephRgw, config_dict, tapeline, wait_for
from tests.tomlwriter import dumps

pytestmark = pytest.mark.s3

DAY = timedelta(days=1)


def _store(rgw: CephRgw, tmp_path: Path, *, object_lock: bool = True) -> S3ObjectStore:
    data = config_dict(tmp_path)
    data["storage"].update(rgw.storage_keys(tmp_path, rgw.new_bucket(object_lock=object_lock)))
    return S3ObjectStore.from_config(parse_config(data, source="test").storage, source="test")


def _put(store: S3ObjectStore, retain_until: datetime | None) -> tuple[str, str]:
    oid = str(uuid.uuid4())
    store.put(oid, [b"sealed ", b"bytes"], retain_until=retain_until)
    [version] = store.version_ids(oid)
    return oid, version


def _whole(when: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(when.timestamp()), UTC)


def test_put_lands_as_a_compliance_locked_version(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    store = _store(ceph_rgw, tmp_path)
    until = datetime.now(UTC) + DAY
    oid, version = _put(store, until)
    assert store.mode == f"worm-external:{store.bucket}"
    assert store.worm
    answer: Any = ceph_rgw.client().get_object_retention(
        Bucket=store.bucket, Key=oid, VersionId=version
    )
    assert answer["Retention"]["Mode"] == "COMPLIANCE"
    assert answer["Retention"]["RetainUntilDate"] == _whole(until)
    assert store.get(oid) == b"sealed bytes"
    assert store.read_range(oid, 7, 5) == b"bytes"
    assert store.read_range(oid, 100, 5) == b""
    assert list(store.ids()) == [oid]


def test_put_without_retain_until_uses_the_longest_class(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    store = _store(ceph_rgw, tmp_path)
    before = datetime.now(UTC)
    oid, version = _put(store, None)
    mode, until = store.retention(oid, version)
    assert mode == "COMPLIANCE"
    assert before + DEFAULT_RETENTION <= until <= datetime.now(UTC) + DEFAULT_RETENTION + DAY


def test_put_refuses_an_existing_id_and_floors_a_past_date(
    ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    store = _store(ceph_rgw, tmp_path)
    oid, _ = _put(store, datetime.now(UTC) + DAY)
    with pytest.raises(StorageError, match=f"object {oid} exists already"):
        store.put(oid, [b"other"], retain_until=datetime.now(UTC) + DAY)
    assert len(store.version_ids(oid)) == 1
    before = datetime.now(UTC)
    old, version = _put(store, before - 30 * DAY)  # an imported record already past its date
    mode, until = store.retention(old, version)
    assert mode == "COMPLIANCE"
    assert before + PASSED_DATE_FLOOR <= until <= datetime.now(UTC) + PASSED_DATE_FLOOR + DAY


def test_deleting_a_locked_version_is_refused_by_the_store(
    ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    store = _store(ceph_rgw, tmp_path)
    oid, version = _put(store, datetime.now(UTC) + DAY)
    with pytest.raises(ClientError, match="AccessDenied"):
        ceph_rgw.client().delete_object(Bucket=store.bucket, Key=oid, VersionId=version)
    with pytest.raises(StorageError) as refused:
        store.delete(oid, version_id=version)
    assert str(refused.value) == (
        f"object {oid} version {version} is locked by the store "
        "(Object Lock retention or legal hold): deletion refused"
    )
    assert store.version_ids(oid) == [version]
    assert store.get(oid) == b"sealed bytes"


def test_legal_hold_reads_back_on_then_off(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    store = _store(ceph_rgw, tmp_path)
    oid, version = _put(store, datetime.now(UTC) + DAY)
    client: Any = ceph_rgw.client()
    store.set_legal_hold(oid, on=True)
    hold = client.get_object_legal_hold(Bucket=store.bucket, Key=oid, VersionId=version)
    assert hold["LegalHold"]["Status"] == "ON"
    store.set_legal_hold(oid, on=False)
    hold = client.get_object_legal_hold(Bucket=store.bucket, Key=oid, VersionId=version)
    assert hold["LegalHold"]["Status"] == "OFF"
    with pytest.raises(NotFound):
        store.set_legal_hold(str(uuid.uuid4()), on=True)


def test_retention_is_extended_and_never_shortened(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    store = _store(ceph_rgw, tmp_path)
    until = datetime.now(UTC) + DAY
    oid, version = _put(store, until)
    with pytest.raises(StorageError, match="refusing to shorten retention") as refused:
        store.extend_retention(oid, until - timedelta(hours=1))
    assert "AccessDenied" not in str(refused.value)  # refused by us, not by the store
    assert store.retention(oid, version) == ("COMPLIANCE", _whole(until))
    later = until + 30 * DAY
    store.extend_retention(oid, later)
    assert store.retention(oid, version) == ("COMPLIANCE", _whole(later))


def test_a_version_can_be_deleted_once_its_retention_expires(
    ceph_rgw: CephRgw, tmp_path: Path
) -> None:
    store = _store(ceph_rgw, tmp_path)
    oid, version = _put(store, datetime.now(UTC) + timedelta(seconds=3))
    with pytest.raises(StorageError, match="locked by the store"):
        store.delete(oid)
    _, until = store.retention(oid, version)
    wait_for(lambda: datetime.now(UTC) > until, timeout=10, what="retention expiry")
    store.delete(oid)
    assert store.version_ids(oid) == []
    with pytest.raises(NotFound):
        store.get(oid)


def test_a_bucket_without_object_lock_is_refused_at_open(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    bucket = ceph_rgw.new_bucket(object_lock=False)
    data["storage"].update(ceph_rgw.storage_keys(tmp_path, bucket))
    with pytest.raises(ConfigError) as refused:
        Archive.open(parse_config(data, source="test"))
    assert refused.value.key == "storage.s3_bucket"
    assert refused.value.reason == f"bucket {bucket} does not have Object Lock enabled"
    path = tmp_path / "tapeline.toml"
    path.write_text(dumps(data))
    result = tapeline("info", "-c", str(path), check=False)
    assert result.returncode == EX_CONFIG
    assert f"storage.s3_bucket: bucket {bucket} does not have Object Lock enabled" in result.stderr


def test_archive_on_s3_reports_worm_external(ceph_rgw: CephRgw, tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    bucket = ceph_rgw.new_bucket()
    data["storage"].update(ceph_rgw.storage_keys(tmp_path, bucket))
    archive = Archive.open(parse_config(data, source="test"))
    try:
        assert archive.storage_mode == f"worm-external:{bucket}"
    finally:
        archive.close()


def test_s3_backend_needs_a_bucket(tmp_path: Path) -> None:
    data: dict[str, Any] = config_dict(tmp_path)
    data["storage"]["backend"] = "s3"
    with pytest.raises(ConfigError, match=r"storage\.s3_bucket: required when storage\.backend"):
        check_semantics(parse_config(data, source="test"), source="test")
