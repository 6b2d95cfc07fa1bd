"""The webhook journal: group commit, records read back, release once everything is filed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeline.archive.crypto import generate_archive_key, load_archive_key
from tapeline.archive.journal import read_journal
from tapeline.daemon.whatsapp.spool import (
    Delivery,
    WebhookJournal,
    decode_delivery,
    encode_delivery,
)
from tapeline.errors import StorageError


def test_a_delivery_survives_the_record_format_byte_for_byte() -> None:
    delivery = Delivery(
        received_at=datetime(2025, 6, 8, 12, 0, 1, 234000, tzinfo=UTC),
        remote="203.0.113.7",
        content_type="application/json; charset=utf-8",
        body=b'{"caf\\u00e9": "\xf0\x9f\x98\x80"}',
    )
    assert decode_delivery(encode_delivery(delivery)) == delivery
    with pytest.raises(StorageError, match="not readable"):
        decode_delivery(b"\x00\x00")


async def test_concurrent_commits_share_fsyncs_and_files_are_released_when_filed(
    tmp_path: Path,
) -> None:
    generate_archive_key(tmp_path / "archive.key")
    key = load_archive_key(tmp_path / "archive.key")
    journal = WebhookJournal(tmp_path / "spool", key, rotate_records=5)
    committer = asyncio.create_task(journal.run())
    try:
        bodies = [f"body {i}".encode() for i in range(12)]
        tickets = await asyncio.gather(*(journal.commit(b) for b in bodies))
        assert len({t.path for t in tickets}) == 1  # one group commit for concurrent deliveries
        later = await journal.commit(b"after rotation")
        assert later.path != tickets[0].path  # more than 5 records: the next one starts a file
        assert sorted(read_journal(tickets[0].path, key).records) == sorted(bodies)
        for ticket in [*tickets, later]:
            journal.filed(ticket)
        journal.close()
        assert list((tmp_path / "spool").glob("*.tpj")) == []
    finally:
        committer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await committer


async def test_unfiled_records_keep_their_journal_for_the_next_start(tmp_path: Path) -> None:
    generate_archive_key(tmp_path / "archive.key")
    key = load_archive_key(tmp_path / "archive.key")
    journal = WebhookJournal(tmp_path / "spool", key)
    committer = asyncio.create_task(journal.run())
    try:
        first = await journal.commit(b"filed")
        await journal.commit(b"not yet filed")
        journal.filed(first)
        journal.close()
        [left] = WebhookJournal(tmp_path / "spool", key).leftovers()
        assert read_journal(left, key).records == [b"filed", b"not yet filed"]
    finally:
        committer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await committer
