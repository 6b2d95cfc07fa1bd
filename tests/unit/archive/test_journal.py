from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeline.archive.core import Archive
from tapeline.archive.crypto import ArchiveKey
from tapeline.archive.filing import AttachmentIn, Filer, MessageIn, NewInteraction
from tapeline.archive.journal import JournalWriter, read_journal
from tapeline.errors import IntegrityError


def _key() -> ArchiveKey:
    return ArchiveKey(os.urandom(32))


def test_records_survive_a_crash_up_to_the_last_sealed_chunk(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "call.tpj"
    writer = JournalWriter(path, key)
    for i in range(5):
        writer.append(f"packet {i}".encode())
    writer.flush()
    writer.append(b"never flushed")  # the crash comes before the next flush
    contents = read_journal(path, key)
    assert contents.records == [f"packet {i}".encode() for i in range(5)]
    assert contents.torn is False


def test_a_torn_tail_is_reported_and_earlier_chunks_kept(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "call.tpj"
    writer = JournalWriter(path, key)
    writer.append(b"first")
    writer.flush()
    writer.append(b"second")
    writer.flush()
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # power cut in the middle of the second chunk
    contents = read_journal(path, key)
    assert contents.records == [b"first"]
    assert contents.torn is True


def test_an_altered_chunk_stops_the_reader_and_a_foreign_key_is_refused(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "call.tpj"
    writer = JournalWriter(path, key)
    writer.append(b"first")
    writer.flush()
    writer.append(b"second")
    writer.close()
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    assert read_journal(path, key).records == [b"first"]
    with pytest.raises(IntegrityError):
        read_journal(path, _key())


def test_journal_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "call.tpj"
    JournalWriter(path, _key()).close()
    from tapeline.errors import StorageError  # noqa: PLC0415

    with pytest.raises(StorageError):
        JournalWriter(path, _key())


def test_canary_is_never_in_clear_in_objects_or_spool(archive: Archive) -> None:
    """Write a unique string through the journal and every kind of object, then scan the disk."""
    canary = f"CANARY-{uuid.uuid4().hex}"
    spool = archive.config.storage.spool
    writer = JournalWriter(spool / "open-call.tpj", archive.vault.archive_key)
    writer.append(canary.encode() * 3)
    writer.flush()
    Filer(archive).file(
        NewInteraction(
            channel="whatsapp",
            kind="message",
            direction="inbound",
            started_at=datetime(2026, 1, 5, tzinfo=UTC),
            source_path="test",
            counterparty="+447700900123",
            counterparty_name=canary,
            message=MessageIn(wamid=f"wamid.{canary}", type="text", text=canary),
            attachments=[
                AttachmentIn(
                    kind="webhook_body",
                    media_type="application/json",
                    data=f'{{"text": "{canary}"}}'.encode(),
                )
            ],
        )
    )
    writer.close()
    scanned = 0
    store = archive.vault.store
    folders = [spool] if store.worm else [archive.config.storage.path, spool]
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                assert canary.encode() not in path.read_bytes(), path
    for object_id in store.ids() if store.worm else []:  # objects in the S3 bucket
        scanned += 1
        assert canary.encode() not in store.get(object_id), object_id
    assert scanned == 3  # the journal, the attachment and the manifest were all looked at


def test_sealed_chunks_are_readable_before_sync_and_sync_after_close_is_a_noop(
    tmp_path: Path,
) -> None:
    """The capture loop seals with `sync=False` and fsyncs from a worker thread."""
    key = _key()
    path = tmp_path / "j.tpj"
    writer = JournalWriter(path, key)
    writer.append(b"first")
    writer.flush(sync=False)
    worker = threading.Thread(target=writer.sync)
    worker.start()
    worker.join()
    assert read_journal(path, key).records == [b"first"]
    writer.close()
    writer.sync()  # the worker may run after the call was filed: nothing to do, no EBADF
