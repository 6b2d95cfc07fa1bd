"""S3ObjectStore's own refusals, with botocore's Stubber standing in for answers RGW never gives.

The behaviour against a real Object Lock engine is tested in tests/integration/test_s3store.py;
these cover a store that answers wrongly (a weak retention read-back, versioning suspended) and
the checks made before any request is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tapeline.archive.objects import LocalObjectStore
from tapeline.archive.s3store import UNMETERED_FREE_BYTES, S3ObjectStore
from tapeline.errors import ConfigError, StorageError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BUCKET = "tapeline-archive"


@pytest.fixture
def stubbed() -> Iterator[tuple[S3ObjectStore, Stubber]]:
    client: Any = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
    )
    with Stubber(client) as stubber:
        yield S3ObjectStore(client, BUCKET, clock=lambda: NOW), stubber
        stubber.assert_no_pending_responses()


def _no_versions(stubber: Stubber) -> None:
    stubber.add_response("list_object_versions", {"Versions": []})


def test_a_weak_retention_read_back_is_not_preserved(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    oid = str(uuid.uuid4())
    _no_versions(stubber)
    stubber.add_response("put_object", {"VersionId": "v1"})
    stubber.add_response(
        "get_object_retention",
        {"Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": NOW + timedelta(days=1)}},
    )
    with pytest.raises(StorageError) as refused:
        store.put(oid, [b"x"], retain_until=NOW + timedelta(days=1))
    assert str(refused.value) == (
        f"object {oid} version v1 is not preserved: the store reports GOVERNANCE until "
        "2026-11-29T12:00:00+00:00, not COMPLIANCE until 2026-11-29T12:00:00+00:00"
    )


def test_an_earlier_date_read_back_is_not_preserved(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    _no_versions(stubber)
    stubber.add_response("put_object", {"VersionId": "v1"})
    stubber.add_response(
        "get_object_retention",
        {"Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": NOW + timedelta(hours=1)}},
    )
    with pytest.raises(StorageError, match="is not preserved"):
        store.put(str(uuid.uuid4()), [b"x"], retain_until=NOW + timedelta(days=1))


def test_shortening_is_refused_without_asking_the_store_to_change(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    oid = str(uuid.uuid4())
    stubber.add_response(
        "list_object_versions",
        {"Versions": [{"Key": oid, "VersionId": "v1", "LastModified": NOW}]},
    )
    stubber.add_response(
        "get_object_retention",
        {"Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": NOW + timedelta(days=10)}},
    )
    # no put_object_retention is stubbed: calling it would fail the test
    with pytest.raises(StorageError, match="refusing to shorten retention"):
        store.extend_retention(oid, NOW + timedelta(days=5))


def test_past_and_naive_dates_are_refused_before_any_request(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, _ = stubbed
    oid = str(uuid.uuid4())
    with pytest.raises(StorageError, match="which has passed"):
        store.extend_retention(oid, NOW - timedelta(days=1))
    with pytest.raises(ValueError, match="retain_until must be timezone-aware"):
        store.put(oid, [b"x"], retain_until=datetime(2030, 1, 1))  # noqa: DTZ001  # the point


def test_a_bucket_with_versioning_suspended_is_refused(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    stubber.add_response(
        "get_object_lock_configuration",
        {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}},
    )
    stubber.add_response("get_bucket_versioning", {"Status": "Suspended"})
    with pytest.raises(ConfigError) as refused:
        store.check_bucket(source="t.toml")
    assert str(refused.value) == (
        f"t.toml: storage.s3_bucket: bucket {BUCKET} does not have versioning enabled"
    )


def test_mode_and_free_bytes_are_honest(stubbed: tuple[S3ObjectStore, Stubber]) -> None:
    store, _ = stubbed
    assert store.mode == f"worm-external:{BUCKET}"
    assert store.worm
    assert store.free_bytes() == UNMETERED_FREE_BYTES


def test_a_local_store_accepts_the_worm_calls_and_says_it_enforces_none(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    oid = str(uuid.uuid4())
    store.put(oid, [b"x"], retain_until=NOW + timedelta(days=1))
    store.set_legal_hold(oid, on=True)
    store.extend_retention(oid, NOW + timedelta(days=2))
    assert (store.worm, store.mode, store.version_ids(oid)) == (False, "audit-trail", [])
    store.delete(oid)  # nothing on a disk stops it: that is why it is never called WORM
    assert list(store.ids()) == []
