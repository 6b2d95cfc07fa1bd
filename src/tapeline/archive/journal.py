"""The crash-safe encrypted journal: what a capture path appends before it does anything else.

File layout:
    header   MAGIC "TPLJ", version, journal id (16 bytes), key id, wrapped-key length, wrapped key
    chunks   [u32 sealed length][u64 chunk number][AES-256-GCM(records)] ...

A chunk holds the records appended since the last seal, each framed as [u32 length][bytes]. A chunk
is sealed (encrypted under its number as nonce, with the journal id as associated data), written
and fsynced by `flush()`; the capture path calls it at least once a second. After a crash the
reader returns every record of every whole chunk and stops at the first torn or altered one, so at
most the last unsealed second is lost. The journal's data key is wrapped by the archive key and
kept in the header, so recovery needs only the file and the archive key. Nothing is ever in
clear on disk.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapeline.archive.crypto import NONCE_BYTES, ArchiveKey, new_data_key
from tapeline.archive.objects import fsync_dir
from tapeline.errors import IntegrityError, StorageError

JOURNAL_MAGIC = b"TPLJ"
JOURNAL_VERSION = 1
_HEADER = struct.Struct("!4sB16s16sH")  # magic, version, journal id, key id, wrapped key length
_CHUNK = struct.Struct("!IQ")  # sealed length, chunk number
_RECORD = struct.Struct("!I")
MAX_CHUNK_BYTES = 16 * 1024 * 1024
SUFFIX = ".tpj"


def _nonce(number: int) -> bytes:
    return number.to_bytes(NONCE_BYTES, "big")


class JournalWriter:
    """Append records to a new journal file; `flush()` seals and fsyncs what was appended."""

    def __init__(
        self, path: Path, archive_key: ArchiveKey, *, journal_id: str | None = None
    ) -> None:
        self.path = path
        self.journal_id = journal_id or str(uuid.uuid4())
        self._id_bytes = uuid.UUID(self.journal_id).bytes
        key = new_data_key()
        self._aead = AESGCM(key)
        wrapped = archive_key.wrap(key, self._id_bytes)
        key_id = bytes.fromhex(archive_key.key_id)[:16].ljust(16, b"\0")
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._next_chunk = 0
        self.records_written = 0
        self._fd_lock = threading.Lock()  # `sync` may run in a worker thread while we close
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
            header = _HEADER.pack(
                JOURNAL_MAGIC, JOURNAL_VERSION, self._id_bytes, key_id, len(wrapped)
            )
            os.write(self._fd, header + wrapped)
            os.fsync(self._fd)
            fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot create journal {path}: {exc.strerror}") from exc

    def append(self, record: bytes) -> None:
        """Queue one record (sealed at the next flush, or now if the chunk grows large)."""
        self._pending.append(_RECORD.pack(len(record)) + record)
        self._pending_bytes += len(record) + _RECORD.size
        if self._pending_bytes >= MAX_CHUNK_BYTES // 4:
            self.flush(sync=False)  # sealed now, made durable by the next flush or sync

    @property
    def dirty(self) -> bool:
        """Whether records wait to be sealed."""
        return bool(self._pending)

    def flush(self, *, sync: bool = True) -> None:
        """Seal the queued records into one chunk, write it and (unless `sync=False`) fsync.

        With `sync=False` the chunk is in the page cache only; `sync()` (from any thread) makes
        it durable. The capture loop seals on its own thread and syncs in a worker.

        Raises:
            StorageError: the write or fsync failed (disk full, I/O error).
        """
        if not self._pending:
            return
        plain = b"".join(self._pending)
        number = self._next_chunk
        sealed = self._aead.encrypt(_nonce(number), plain, self._id_bytes)
        chunk = _CHUNK.pack(len(sealed), number) + sealed
        try:
            written = os.write(self._fd, chunk)
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"journal {self.path}: {exc.strerror}") from exc
        if written != len(chunk):  # a full disk takes part of a write without an error
            raise StorageError(f"journal {self.path}: short write ({written} of {len(chunk)})")
        self.records_written += len(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._next_chunk += 1

    def sync(self) -> None:
        """Make every sealed chunk durable (safe from another thread; a no-op once closed).

        Raises:
            StorageError: the fsync failed.
        """
        with self._fd_lock:
            if self._closed:
                return
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"journal {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Seal what is left, fsync and close the file."""
        try:
            self.flush()
        finally:
            with self._fd_lock:
                self._closed = True
                os.close(self._fd)


@dataclass(frozen=True, slots=True)
class JournalContents:
    """What a journal holds: its records, and whether it ended in a torn or bad chunk."""

    journal_id: str
    records: list[bytes]
    torn: bool


def read_journal(path: Path, archive_key: ArchiveKey) -> JournalContents:
    """Read every record of every whole chunk.

    Raises:
        IntegrityError: the header is not a journal's, or its key does not open.
        StorageError: the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read journal {path}: {exc.strerror}") from exc
    if len(data) < _HEADER.size:
        raise IntegrityError(f"journal {path} has no complete header")
    magic, version, id_bytes, _key_id, wrapped_len = _HEADER.unpack_from(data)
    if magic != JOURNAL_MAGIC or version != JOURNAL_VERSION:
        raise IntegrityError(f"{path} is not a Tapeline journal")
    offset = _HEADER.size + wrapped_len
    key = archive_key.unwrap(data[_HEADER.size : offset], id_bytes)
    records, torn = _read_chunks(AESGCM(key), id_bytes, data, offset)
    return JournalContents(journal_id=str(uuid.UUID(bytes=id_bytes)), records=records, torn=torn)


def _read_chunks(
    aead: AESGCM, id_bytes: bytes, data: bytes, offset: int
) -> tuple[list[bytes], bool]:
    records: list[bytes] = []
    expected = 0
    while offset < len(data):
        if offset + _CHUNK.size > len(data):
            return records, True
        length, number = _CHUNK.unpack_from(data, offset)
        start = offset + _CHUNK.size
        if number != expected or length > MAX_CHUNK_BYTES or start + length > len(data):
            return records, True
        try:
            plain = aead.decrypt(_nonce(number), data[start : start + length], id_bytes)
        except InvalidTag:
            return records, True
        records.extend(_split_records(plain))
        offset = start + length
        expected += 1
    return records, False


def _split_records(plain: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(plain):
        (length,) = _RECORD.unpack_from(plain, pos)
        pos += _RECORD.size
        yield plain[pos : pos + length]
        pos += length


def sync_all(journals: list[JournalWriter]) -> list[Path]:
    """Make each journal durable (run it in a worker thread); the paths of those that failed."""
    failed = []
    for journal in journals:
        try:
            journal.sync()
        except StorageError:
            failed.append(journal.path)
    return failed
