"""Sealed objects in an S3 bucket with Object Lock: storage no one can rewrite or erase early.

Theory of operation: the bucket is created beforehand with Object Lock enabled (which turns
versioning on; neither can be added to an existing AWS bucket). `S3ObjectStore.from_config`
refuses a bucket without both (a `ConfigError` naming `storage.s3_bucket`, exit 78). Every `put`
writes a new version with Object Lock mode COMPLIANCE and a `RetainUntilDate`, then reads the
retention back with GetObjectRetention; only a read-back that shows COMPLIANCE until at least the
asked date counts as preserved, anything else raises `StorageError`. In COMPLIANCE mode nobody,
root account included, can delete the version or shorten its date before it passes; legal holds
block deletion on top of that, whatever the date. This module only ever extends a date and refuses
an earlier one itself, before asking the store to change anything.

Objects are keyed by their canonical UUID. `delete` removes versions by version id, which the
store refuses while a version is retained or held: that refusal surfaces as `StorageError`.
Tested against a single-node Ceph RGW (`tests/integration/test_s3store.py`); the same calls
work on AWS S3, MinIO and StorageGRID.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from tapeline.archive.retention import LONGEST_MINIMUM_DAYS
from tapeline.config import StorageConfig, read_secret
from tapeline.errors import ConfigError, NotFound, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectLockRetentionTypeDef

COMPLIANCE: Literal["COMPLIANCE"] = "COMPLIANCE"
# Strategy: a put without `retain_until` must never leave an object deletable before any record
# it could belong to has expired, and a COMPLIANCE date can be extended later but never shortened.
# So the store-level default is the longest built-in retention class (FINRA 4511, six years);
# filing passes the record's own `retain_until` when it knows it.
DEFAULT_RETENTION = timedelta(days=LONGEST_MINIMUM_DAYS)
# A record can be filed after its `retain_until` has passed (an import of old calls, a zero-day
# class); S3 refuses a past RetainUntilDate, and such a record must still be stored, not lost in a
# retry loop. It is locked for this floor instead: shorter than any purge (the grace period after a
# two-person approval is counted in days), so it never holds up a disposal that is due.
PASSED_DATE_FLOOR = timedelta(days=1)
# S3 has no free-space figure; capacity alarms for a bucket belong to the storage system.
UNMETERED_FREE_BYTES = 2**63 - 1
HTTP_NOT_FOUND = 404
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_NO_LOCK = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration", "InvalidRequest"}
)
_BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
_KEY = "storage.s3_bucket"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _whole_seconds(when: datetime) -> datetime:
    """Round up to a whole second: some stores keep seconds only, and must never round down."""
    if when.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    stamp = math.ceil(when.timestamp())
    return datetime.fromtimestamp(stamp, UTC)


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Translate botocore errors into ours (DESIGN: `StorageError` at the archive edge)."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in _MISSING:
            raise NotFound(f"{what}: no such object") from exc
        raise StorageError(f"{what}: {_code(exc) or 'error'} from the S3 store") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}") from exc


class S3ObjectStore:
    """Sealed objects as Object Lock (COMPLIANCE) versions in one bucket (`storage.s3_bucket`)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        default_retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._default_retention = default_retention
        self._clock = clock

    @classmethod
    def from_config(cls, storage: StorageConfig, *, source: str = "config") -> S3ObjectStore:
        """Build the client from `[storage]` and check the bucket.

        Raises:
            ConfigError: a key is missing, a secret unreadable, or the bucket lacks Object Lock
                or versioning (exit 78).
            StorageError: the endpoint cannot be reached.
        """
        bucket = storage.s3_bucket
        access_file = storage.s3_access_key_file
        secret_file = storage.s3_secret_key_file
        if bucket is None:
            raise ConfigError(source, _KEY, 'required when storage.backend = "s3"')
        if access_file is None:
            raise ConfigError(source, "storage.s3_access_key_file", 'required for backend "s3"')
        if secret_file is None:
            raise ConfigError(source, "storage.s3_secret_key_file", 'required for backend "s3"')
        access = read_secret(access_file, key="storage.s3_access_key_file", source=source)
        secret = read_secret(secret_file, key="storage.s3_secret_key_file", source=source)
        client = boto3.client(
            "s3",
            endpoint_url=storage.s3_endpoint,
            region_name=storage.s3_region,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            verify=str(storage.s3_ca_file) if storage.s3_ca_file else None,
            config=BotoConfig(
                # path-style URLs for on-prem endpoints (no wildcard DNS needed)
                s3={"addressing_style": "path" if storage.s3_endpoint else "auto"},
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        store = cls(client, bucket)
        store.check_bucket(source=source)
        return store

    @property
    def mode(self) -> str:
        """`worm-external:<bucket>`: the store enforces retention, not Tapeline."""
        return f"worm-external:{self._bucket}"

    @property
    def worm(self) -> bool:
        """Object Lock COMPLIANCE, checked at open and on every put."""
        return True

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    def check_bucket(self, *, source: str = "config") -> None:
        """Refuse a bucket without Object Lock enabled or without versioning.

        Raises:
            ConfigError: naming `storage.s3_bucket` (or the access key file for bad credentials).
            StorageError: the endpoint cannot be reached or answers with another error.
        """
        name = self._bucket
        try:
            lock = self._client.get_object_lock_configuration(Bucket=name)
            versioning = self._client.get_bucket_versioning(Bucket=name)
        except ClientError as exc:
            code = _code(exc)
            if code in _NO_LOCK:
                raise ConfigError(
                    source, _KEY, f"bucket {name} does not have Object Lock enabled"
                ) from exc
            if code == "NoSuchBucket":
                raise ConfigError(source, _KEY, f"bucket {name} does not exist") from exc
            if code in _BAD_CREDENTIALS:
                raise ConfigError(
                    source, "storage.s3_access_key_file", f"the S3 store refused the key ({code})"
                ) from exc
            raise StorageError(f"cannot check bucket {name}: {code or 'error'}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot check bucket {name}: {exc}") from exc
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise ConfigError(source, _KEY, f"bucket {name} does not have Object Lock enabled")
        if versioning.get("Status") != "Enabled":
            raise ConfigError(source, _KEY, f"bucket {name} does not have versioning enabled")

    def put(
        self, object_id: str, chunks: Iterable[bytes], *, retain_until: datetime | None = None
    ) -> None:
        """Write a new COMPLIANCE-locked version and confirm its retention by read-back.

        Args:
            object_id: the new object's id (a UUID).
            chunks: the sealed bytes.
            retain_until: keep at least until then; `DEFAULT_RETENTION` from now when absent,
                `PASSED_DATE_FLOOR` from now when it has passed already.

        Raises:
            StorageError: the id exists, the write failed, or the
                retention did not read back as COMPLIANCE until at least that date.
            ValueError: `retain_until` is not timezone-aware.
        """
        now = self._clock()
        until = _whole_seconds(retain_until or now + self._default_retention)
        if until <= now:
            until = _whole_seconds(now + PASSED_DATE_FLOOR)
        key = str(uuid.UUID(object_id))
        if self.version_ids(object_id):
            raise StorageError(f"object {object_id} exists already")
        body = b"".join(chunks)
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        with _s3_errors(f"cannot write object {object_id}"):
            answer = self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentMD5=md5,
                ObjectLockMode=COMPLIANCE,
                ObjectLockRetainUntilDate=until,
            )
        version = answer.get("VersionId")
        if not version:
            raise StorageError(f"object {object_id} was stored without a version id")
        self._confirm_retention(object_id, version, until)

    def get(self, object_id: str) -> bytes:
        """Read a whole object (its current version).

        Raises:
            NotFound: no such object.
            StorageError: the store could not answer.
        """
        with _s3_errors(f"cannot read object {object_id}"):
            answer = self._client.get_object(Bucket=self._bucket, Key=str(uuid.UUID(object_id)))
            return answer["Body"].read()

    def read_range(self, object_id: str, offset: int, length: int) -> bytes:
        """Read `length` bytes at `offset` (fewer, or none, past the end).

        Raises:
            NotFound: no such object.
            StorageError: the store could not answer.
        """
        key = str(uuid.UUID(object_id))
        with _s3_errors(f"cannot read object {object_id}"):
            if length <= 0:
                self._client.head_object(Bucket=self._bucket, Key=key)
                return b""
            try:
                answer = self._client.get_object(
                    Bucket=self._bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
                )
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # the object exists; offset is past its end
                    return b""
                raise
            return answer["Body"].read()

    def delete(self, object_id: str, *, version_id: str | None = None) -> None:
        """Delete one version, or every version, of an object, each by its version id.

        The store refuses while a version is retained or held; nothing is hidden behind a
        delete marker. A missing object is not an error (as on a local disk).

        Raises:
            StorageError: the store refused (locked), naming the version.
        """
        key = str(uuid.UUID(object_id))
        versions = [version_id] if version_id else self._all_versions(key)
        for version in versions:
            try:
                self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=version)
            except ClientError as exc:
                if _code(exc) == "AccessDenied":
                    raise StorageError(
                        f"object {object_id} version {version} is locked by the store "
                        "(Object Lock retention or legal hold): deletion refused"
                    ) from exc
                raise StorageError(
                    f"cannot delete object {object_id} version {version}: {_code(exc)}"
                ) from exc
            except BotoCoreError as exc:
                raise StorageError(f"cannot delete object {object_id}: {exc}") from exc

    def ids(self) -> Iterator[str]:
        """Every object id with a current version in the bucket."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket)
        with _s3_errors(f"cannot list bucket {self._bucket}"):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item.get("Key", "")
                    with contextlib.suppress(ValueError):
                        yield str(uuid.UUID(key))

    def free_bytes(self) -> int:
        """S3 reports no free space: a constant that never trips the local floor."""
        return UNMETERED_FREE_BYTES

    def version_ids(self, object_id: str) -> list[str]:
        """The object's version ids, oldest first (delete markers left out).

        Raises:
            StorageError: the store could not list them.
        """
        return self._versions(str(uuid.UUID(object_id)), markers=False)

    def set_legal_hold(self, object_id: str, *, on: bool) -> None:
        """Set LegalHold ON or OFF on every version, confirmed by read-back.

        Raises:
            NotFound: the object has no versions.
            StorageError: a version refused, or its hold did not read back as set.
        """
        status: Literal["ON", "OFF"] = "ON" if on else "OFF"
        versions = self.version_ids(object_id)
        if not versions:
            raise NotFound(f"object {object_id} is missing")
        key = str(uuid.UUID(object_id))
        for version in versions:
            with _s3_errors(f"cannot set legal hold {status} on object {object_id}"):
                self._client.put_object_legal_hold(
                    Bucket=self._bucket, Key=key, VersionId=version, LegalHold={"Status": status}
                )
            seen = self.legal_hold(object_id, version)
            if seen != status:
                raise StorageError(
                    f"object {object_id} version {version}: legal hold reads back {seen}, "
                    f"not {status}"
                )

    def legal_hold(self, object_id: str, version_id: str) -> str:
        """The legal hold status of one version as the store reports it (`ON` or `OFF`)."""
        key = str(uuid.UUID(object_id))
        try:
            answer = self._client.get_object_legal_hold(
                Bucket=self._bucket, Key=key, VersionId=version_id
            )
        except ClientError as exc:
            if _code(exc) in _NO_LOCK:  # never set: RGW answers "no configuration"
                return "OFF"
            raise StorageError(f"cannot read legal hold of object {object_id}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read legal hold of object {object_id}: {exc}") from exc
        return str(answer.get("LegalHold", {}).get("Status", "OFF"))

    def retention(self, object_id: str, version_id: str) -> tuple[str, datetime]:
        """The Object Lock mode and retain-until date of one version, as the store reports them.

        Raises:
            StorageError: the version has no retention, or the store could not answer.
        """
        key = str(uuid.UUID(object_id))
        with _s3_errors(f"cannot read retention of object {object_id} version {version_id}"):
            answer = self._client.get_object_retention(
                Bucket=self._bucket, Key=key, VersionId=version_id
            )
        found = answer.get("Retention", {})
        mode, until = found.get("Mode"), found.get("RetainUntilDate")
        if mode is None or until is None:
            raise StorageError(f"object {object_id} version {version_id} has no retention")
        return str(mode), until.astimezone(UTC)

    def extend_retention(self, object_id: str, retain_until: datetime) -> None:
        """Move every version's RetainUntilDate to `retain_until`, confirmed by read-back.

        An earlier date than any version's current one is refused here, before the store is
        asked to change anything; an equal date changes nothing.

        Raises:
            NotFound: the object has no versions.
            StorageError: the date would shorten a retention, or the store refused.
        """
        until = _whole_seconds(retain_until)
        if until <= self._clock():
            raise StorageError(
                f"object {object_id}: refusing to set retention to {until.isoformat()}, "
                "which has passed"
            )
        versions = self.version_ids(object_id)
        if not versions:
            raise NotFound(f"object {object_id} is missing")
        current = {version: self.retention(object_id, version)[1] for version in versions}
        for version, date in current.items():
            if until < date:
                raise StorageError(
                    f"object {object_id} version {version}: refusing to shorten retention "
                    f"from {date.isoformat()} to {until.isoformat()}"
                )
        key = str(uuid.UUID(object_id))
        for version, date in current.items():
            if until == date:
                continue
            wanted: ObjectLockRetentionTypeDef = {"Mode": COMPLIANCE, "RetainUntilDate": until}
            with _s3_errors(f"cannot extend retention of object {object_id}"):
                self._client.put_object_retention(
                    Bucket=self._bucket,
                    Key=key,
                    VersionId=version,
                    Retention=wanted,
                )
            self._confirm_retention(object_id, version, until)

    def _confirm_retention(self, object_id: str, version: str, until: datetime) -> None:
        mode, seen = self.retention(object_id, version)
        if mode != COMPLIANCE or seen < until:
            raise StorageError(
                f"object {object_id} version {version} is not preserved: the store reports "
                f"{mode} until {seen.isoformat()}, not {COMPLIANCE} until {until.isoformat()}"
            )

    def _all_versions(self, key: str) -> list[str]:
        return self._versions(key, markers=True)

    def _versions(self, key: str, *, markers: bool) -> list[str]:
        found: list[tuple[datetime, str]] = []
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self._bucket, Prefix=key
        )
        with _s3_errors(f"cannot list versions of object {key}"):
            for page in pages:
                rows = [
                    (v.get("Key"), v.get("LastModified"), v.get("VersionId"))
                    for v in page.get("Versions", [])
                ]
                if markers:
                    rows += [
                        (m.get("Key"), m.get("LastModified"), m.get("VersionId"))
                        for m in page.get("DeleteMarkers", [])
                    ]
                found.extend(
                    (when or _utcnow(), version)
                    for name, when, version in rows
                    if name == key and version
                )
        return [version for _, version in sorted(found)]
