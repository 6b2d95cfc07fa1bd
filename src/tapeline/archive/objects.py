"""Object stores: where sealed objects live.

The store sees only sealed bytes (crypto.py); it never holds content in clear and knows nothing of
records. `LocalObjectStore` writes atomically: a temp file in the target folder, fsync, rename, and
an fsync of the folder, so a crash leaves either the old state or the whole new object.
Objects are spread over two levels of folders by the random tail of their id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tapeline.errors import DiskFull, NotFound, StorageError

_SUFFIX = ".obj"


class ObjectStore(Protocol):
    """The seam between the archive and a storage backend (local disk, or S3 in s3store.py).

    The WORM capabilities (`retain_until`, legal holds, retention extension, version ids) are
    enforced only where `worm` is true; a local disk accepts the calls and enforces nothing, and
    says so through `worm` and `mode`. Callers keep holds and retention in the index either way.
    """

    @property
    def mode(self) -> str:
        """How the storage is described to examiners: `audit-trail` or `worm-external:<bucket>`."""
        ...

    @property
    def worm(self) -> bool:
        """True only when the store itself refuses to rewrite or delete a retained object."""
        ...

    def put(
        self, object_id: str, chunks: Iterable[bytes], *, retain_until: datetime | None = None
    ) -> None:
        """Store a new object, kept at least until `retain_until`; an id is never reused."""
        ...

    def set_legal_hold(self, object_id: str, *, on: bool) -> None:
        """Set or release the store's legal hold on every version of an object."""
        ...

    def extend_retention(self, object_id: str, retain_until: datetime) -> None:
        """Move every version's retention to `retain_until`; never shortens it."""
        ...

    def version_ids(self, object_id: str) -> list[str]:
        """The store's version ids of an object, oldest first (none where unversioned)."""
        ...

    def get(self, object_id: str) -> bytes:
        """Read a whole sealed object."""
        ...

    def read_range(self, object_id: str, offset: int, length: int) -> bytes:
        """Read part of a sealed object (for seeking playback)."""
        ...

    def delete(self, object_id: str) -> None:
        """Remove an object (purge only)."""
        ...

    def ids(self) -> Iterator[str]:
        """Every stored object id."""
        ...

    def free_bytes(self) -> int:
        """Free space where new objects go."""
        ...


def fsync_dir(path: Path) -> None:
    """Make a rename or create in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore:
    """Sealed objects as files under one folder (`storage.path`)."""

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self._root = root
        self._min_free = min_free_bytes

    @property
    def mode(self) -> str:
        """A local disk is an audit-trail store, never WORM."""
        return "audit-trail"

    @property
    def worm(self) -> bool:
        """A local disk can always be rewritten by root: never WORM."""
        return False

    @property
    def root(self) -> Path:
        """The folder holding the objects."""
        return self._root

    def path_of(self, object_id: str) -> Path:
        """Where an object's file is (or would be)."""
        canonical = str(uuid.UUID(object_id))
        tail = canonical.replace("-", "")[-4:]
        return self._root / tail[:2] / tail[2:] / (canonical + _SUFFIX)

    def put(
        self,
        object_id: str,
        chunks: Iterable[bytes],
        *,
        retain_until: datetime | None = None,  # noqa: ARG002  # nothing on a disk can enforce it
    ) -> None:
        """Write a new object atomically.

        `retain_until` is accepted for the protocol and not enforced: the index keeps retention.

        Raises:
            DiskFull: free space is below the floor; nothing was written.
            StorageError: the id exists already, or the write failed.
        """
        if self.free_bytes() < self._min_free:
            raise DiskFull(f"object store {self._root} is below its free-space floor")
        final = self.path_of(object_id)
        if final.exists():
            raise StorageError(f"object {object_id} exists already")
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("xb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, final)  # fails if a concurrent writer got there first
            tmp.unlink()
            fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(f"cannot write object {object_id}: {exc.strerror}") from exc

    def get(self, object_id: str) -> bytes:
        """Read a whole object.

        Raises:
            NotFound: no such object.
        """
        try:
            return self.path_of(object_id).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"object {object_id} is missing") from exc
        except OSError as exc:
            raise StorageError(f"cannot read object {object_id}: {exc.strerror}") from exc

    def read_range(self, object_id: str, offset: int, length: int) -> bytes:
        """Read `length` bytes at `offset`.

        Raises:
            NotFound: no such object.
        """
        try:
            with self.path_of(object_id).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except FileNotFoundError as exc:
            raise NotFound(f"object {object_id} is missing") from exc

    def delete(self, object_id: str) -> None:
        """Remove an object file (purge)."""
        path = self.path_of(object_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    def ids(self) -> Iterator[str]:
        """Every object id present on disk."""
        if not self._root.exists():
            return
        for path in sorted(self._root.glob(f"*/*/*{_SUFFIX}")):
            yield path.name.removesuffix(_SUFFIX)

    def free_bytes(self) -> int:
        """Free bytes on the filesystem holding the store."""
        probe = self._root
        while not probe.exists():
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def set_legal_hold(self, object_id: str, *, on: bool) -> None:
        """Nothing to set on a disk: holds live in the index only (not WORM)."""

    def extend_retention(self, object_id: str, retain_until: datetime) -> None:
        """Nothing to extend on a disk: retention lives in the index only (not WORM)."""

    def version_ids(self, object_id: str) -> list[str]:  # noqa: ARG002  # files have no versions
        """A file has no versions: always empty."""
        return []
