"""The webhook journal: every signed delivery is sealed and fsynced here before the 200.

Theory of operation: POST handlers hand their raw body to `commit()`, which queues it; one
committer task appends everything queued since its last round to the current journal file and
fsyncs once (group commit), then answers every waiting handler. A record is the delivery's raw
bytes with a small JSON header (`received_at`, remote address, content type), so parsing can be
redone from the journal at any time. When every record of a closed journal has been filed, the
file is deleted; a journal left by a crash is read back and filed again on start (filing is
idempotent, so nothing is doubled).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tapeline.archive.crypto import ArchiveKey
from tapeline.archive.journal import SUFFIX, JournalWriter
from tapeline.errors import StorageError

log = logging.getLogger(__name__)
_HEADER_LENGTH = struct.Struct("!I")
ROTATE_RECORDS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One journaled webhook delivery."""

    received_at: datetime
    remote: str | None
    content_type: str | None
    body: bytes


def encode_delivery(delivery: Delivery) -> bytes:
    """The journal record of a delivery: length-prefixed JSON header, then the raw body."""
    header = json.dumps(
        {
            "v": 1,
            "received_at": delivery.received_at.isoformat(),
            "remote": delivery.remote,
            "content_type": delivery.content_type,
        },
        separators=(",", ":"),
    ).encode()
    return _HEADER_LENGTH.pack(len(header)) + header + delivery.body


def decode_delivery(record: bytes) -> Delivery:
    """Read a journal record back.

    Raises:
        StorageError: the record is not one we wrote.
    """
    try:
        (length,) = _HEADER_LENGTH.unpack_from(record)
        header: dict[str, Any] = json.loads(record[4 : 4 + length])
        return Delivery(
            received_at=datetime.fromisoformat(header["received_at"]),
            remote=header.get("remote"),
            content_type=header.get("content_type"),
            body=record[4 + length :],
        )
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise StorageError("webhook journal record is not readable") from exc


@dataclass(frozen=True, slots=True)
class Ticket:
    """Where a delivery was journaled: the file and its record number."""

    path: Path
    number: int


class WebhookJournal:
    """Group-committed, encrypted, fsynced journal files in one folder."""

    def __init__(
        self, folder: Path, archive_key: ArchiveKey, *, rotate_records: int = ROTATE_RECORDS
    ) -> None:
        self.folder = folder
        self._rotate_at = rotate_records
        self._key = archive_key
        self._writer: JournalWriter | None = None
        self._queue: list[tuple[bytes, asyncio.Future[Ticket]]] = []
        self._wake = asyncio.Event()
        self._written: dict[Path, int] = {}
        self._filed: dict[Path, int] = {}
        self._closed: set[Path] = set()

    def leftovers(self) -> list[Path]:
        """Journal files left by an earlier run (to be filed again), oldest first."""
        if not self.folder.exists():
            return []
        return sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)

    async def commit(self, record: bytes) -> Ticket:
        """Journal one record durably; returns once it is fsynced.

        Raises:
            StorageError: the journal could not be written.
        """
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        """The committer: one append+fsync round per wake-up, for everything queued."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                path, first = await asyncio.to_thread(self._write, [r for r, _ in batch])
            except StorageError as exc:
                log.error("webhook journal write failed: %s", exc)  # noqa: TRY400  # no traceback
                self._abandon_writer()
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for offset, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(Ticket(path, first + offset))
            if self._written[path] >= self._rotate_at:
                await asyncio.to_thread(self._rotate)

    def _write(self, records: list[bytes]) -> tuple[Path, int]:
        if self._writer is None:
            self._writer = JournalWriter(
                self.folder / f"whatsapp-{datetime.now().astimezone():%Y%m%dT%H%M%S%f}{SUFFIX}",
                self._key,
            )
        writer = self._writer
        first = writer.records_written
        for record in records:
            writer.append(record)
        writer.flush()
        self._written[writer.path] = writer.records_written
        return writer.path, first

    def _abandon_writer(self) -> None:
        if self._writer is not None:
            path = self._writer.path
            try:
                self._writer.close()
            except (OSError, StorageError):
                log.exception("could not close journal %s", path)
            self._writer = None
            self._closed.add(path)

    def _rotate(self) -> None:
        if self._writer is None:
            return
        path = self._writer.path
        self._writer.close()
        self._writer = None
        self._closed.add(path)
        self._release_if_done(path)

    def filed(self, ticket: Ticket) -> None:
        """Note that a journaled delivery has been filed (its journal may now be released)."""
        self._filed[ticket.path] = self._filed.get(ticket.path, 0) + 1
        if ticket.path in self._closed:
            self._release_if_done(ticket.path)

    def _release_if_done(self, path: Path) -> None:
        if self._filed.get(path, 0) >= self._written.get(path, 0):
            release(path)
            self._closed.discard(path)
            self._filed.pop(path, None)
            self._written.pop(path, None)

    def close(self) -> None:
        """Seal and close the current file; delete it if everything in it was filed."""
        self._rotate()


def release(path: Path) -> None:
    """Delete a journal whose every delivery is filed."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not release journal %s: %s", path, exc.strerror)
