"""Sealing, storing and reading back objects: the one place plaintext meets the object store.

`store()` seals plaintext under a fresh data key, writes it, reads it back and opens it again before
it counts (a write that cannot be read back is an error, not a record). `load()` opens an object
and checks its plaintext SHA-256 against the index on every read.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime

from tapeline.archive.crypto import ArchiveKey, new_data_key, open_object, seal_object
from tapeline.archive.ids import new_id
from tapeline.archive.objects import ObjectStore
from tapeline.errors import IntegrityError

_SELF_KEY = struct.Struct("!H")


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedRef:
    """What the index keeps about a stored object."""

    object_id: str
    sha256: str
    size: int
    wrapped_key: bytes
    key_id: str


class Vault:
    """The archive key and an object store, together."""

    def __init__(self, store: ObjectStore, archive_key: ArchiveKey) -> None:
        self.store = store
        self.archive_key = archive_key

    def store_bytes(
        self,
        plaintext: bytes,
        *,
        object_id: str | None = None,
        retain_until: datetime | None = None,
    ) -> SealedRef:
        """Seal and store new content under a new id; verified by read-back.

        `retain_until` is the record's: a WORM store locks the object until then (and confirms
        the lock by read-back) before this returns.

        Raises:
            StorageError: the write failed (DiskFull when below the free-space floor).
            IntegrityError: the stored bytes did not read back as written.
        """
        oid = object_id or new_id()
        raw_id = uuid.UUID(oid).bytes
        key = new_data_key()
        digest = hashlib.sha256(plaintext).hexdigest()
        self.store.put(oid, seal_object(raw_id, key, plaintext), retain_until=retain_until)
        if hashlib.sha256(open_object(raw_id, key, self.store.get(oid))).hexdigest() != digest:
            raise IntegrityError(f"object {oid} did not read back as written")
        return SealedRef(
            object_id=oid,
            sha256=digest,
            size=len(plaintext),
            wrapped_key=self.archive_key.wrap(key, raw_id),
            key_id=self.archive_key.key_id,
        )

    def load(self, object_id: str, wrapped_key: bytes, sha256: str) -> bytes:
        """Open an object and check its content hash.

        Raises:
            NotFound: the object is missing.
            IntegrityError: a byte changed, or the hash differs from the index.
        """
        raw_id = uuid.UUID(object_id).bytes
        key = self.archive_key.unwrap(wrapped_key, raw_id)
        plaintext = open_object(raw_id, key, self.store.get(object_id))
        if hashlib.sha256(plaintext).hexdigest() != sha256:
            raise IntegrityError(f"object {object_id} does not match its recorded SHA-256")
        return plaintext

    def store_self_keyed(
        self, plaintext: bytes, *, retain_until: datetime | None = None
    ) -> SealedRef:
        """Store an object that carries its own wrapped key (record manifests).

        A manifest holds the wrapped keys of its record's other objects, so the archive can be
        rebuilt from the objects and the escrowed archive key alone; its own key must therefore
        travel with it. Destroying the object destroys that key.
        """
        oid = new_id()
        raw_id = uuid.UUID(oid).bytes
        key = new_data_key()
        wrapped = self.archive_key.wrap(key, raw_id)
        digest = hashlib.sha256(plaintext).hexdigest()
        prefix = _SELF_KEY.pack(len(wrapped)) + wrapped
        self.store.put(
            oid, [prefix, *seal_object(raw_id, key, plaintext)], retain_until=retain_until
        )
        ref = SealedRef(
            object_id=oid,
            sha256=digest,
            size=len(plaintext),
            wrapped_key=wrapped,
            key_id=self.archive_key.key_id,
        )
        if self.load_self_keyed(oid, sha256=digest) != plaintext:
            raise IntegrityError(f"object {oid} did not read back as written")
        return ref

    def load_self_keyed(self, object_id: str, *, sha256: str | None = None) -> bytes:
        """Open an object stored by `store_self_keyed` (with the archive key only).

        Raises:
            NotFound: the object is missing.
            IntegrityError: a byte changed, or the hash differs from `sha256` when given.
        """
        raw_id = uuid.UUID(object_id).bytes
        data = self.store.get(object_id)
        if len(data) < _SELF_KEY.size:
            raise IntegrityError(f"object {object_id} is truncated")
        (length,) = _SELF_KEY.unpack_from(data)
        wrapped = data[_SELF_KEY.size : _SELF_KEY.size + length]
        key = self.archive_key.unwrap(wrapped, raw_id)
        plaintext = open_object(raw_id, key, data[_SELF_KEY.size + length :])
        if sha256 is not None and hashlib.sha256(plaintext).hexdigest() != sha256:
            raise IntegrityError(f"object {object_id} does not match its recorded SHA-256")
        return plaintext
