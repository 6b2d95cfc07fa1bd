"""Amending filed records on both index backends: statuses, late media, identifier links."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tapeline.archive.amend import Amender, StatusIn
from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, MediaIn, MessageIn, NewInteraction
from tapeline.archive.models import CounterpartyIdentifier, MediaObject, OutboxEvent
from tapeline.archive.records import Filters, search

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _file(
    archive: Archive, wamid: str, *, media: bool = False, aliases: list[str] | None = None
) -> str:
    return Filer(archive).file(
        NewInteraction(
            channel="whatsapp",
            kind="message",
            direction="outbound",
            started_at=T0,
            source_path="whatsapp",
            line_number="+442071230001",
            counterparty="+972987654321",
            counterparty_aliases=aliases or [],
            message=MessageIn(wamid=wamid, type="image" if media else "text", text="hello"),
            media=[MediaIn(data=None, media_id="m1", mime_type="image/jpeg", pending=True)]
            if media
            else [],
        )
    )


def _status(status: str, seconds: int, errors: list[object] | None = None) -> StatusIn:
    at = T0 + timedelta(seconds=seconds)
    return StatusIn(status=status, at=at, status_id=f"{status}:{seconds}", errors=errors or [])


def test_statuses_apply_in_rank_order_and_duplicates_are_dropped(archive: Archive) -> None:
    interaction = _file(archive, "wamid.a")
    amender = Amender(archive)
    assert amender.record_status(interaction, _status("read", 30)) == "applied"
    assert amender.record_status(interaction, _status("sent", 10)) == "kept"
    assert amender.record_status(interaction, _status("read", 30)) == "duplicate"
    errors: list[object] = [{"code": 131026}]
    assert amender.record_status(interaction, _status("failed", 40, errors=errors)) == "applied"
    assert amender.record_status(interaction, _status("delivered", 20)) == "kept"
    with archive.index.read() as session:
        [record] = search(session, Filters(include_hidden=True))
        events = session.execute(
            select(OutboxEvent.type).where(OutboxEvent.type == "message.status")
        ).all()
    assert record["message"]["status"] == "failed"
    assert record["message"]["errors"] == errors
    assert len(events) == 4


def test_late_media_is_sealed_into_the_record_with_a_new_manifest(archive: Archive) -> None:
    _file(archive, "wamid.b", media=True)
    amender = Amender(archive)
    [(row, media_id, _mime, _sha, message_at)] = amender.pending_media()
    assert (media_id, message_at) == ("m1", T0)
    amender.media_failed(row, reason="HTTP 500", final=False)
    assert [r[0] for r in amender.pending_media()] == [row]
    data = b"\xff\xd8 jpeg bytes"
    digest = hashlib.sha256(data).hexdigest()
    assert amender.store_media(row, data, mime_type="image/jpeg", expected=digest) == "stored"
    assert amender.pending_media() == []
    with archive.index.read() as session:
        media = session.get_one(MediaObject, row)
        [record] = search(session, Filters(include_hidden=True))
    assert media.sha256 == digest
    assert record["message"]["media"][0]["state"] == "stored"


def test_aliases_link_one_person_across_number_and_bsuid(archive: Archive) -> None:
    _file(archive, "wamid.c", aliases=["bsuid:US.1"])
    Filer(archive).file(
        NewInteraction(
            channel="whatsapp",
            kind="message",
            direction="inbound",
            started_at=T0,
            source_path="whatsapp",
            counterparty="bsuid:US.1",
            message=MessageIn(wamid="wamid.d", type="text", text="again"),
        )
    )
    with archive.index.read() as session:
        people = set(session.execute(select(CounterpartyIdentifier.counterparty_id)).scalars())
        by_bsuid = search(session, Filters(party="bsuid:US.1", include_hidden=True))
    assert len(people) == 1
    assert len(by_bsuid) == 2
