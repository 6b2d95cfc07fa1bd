"""Media fetch against a local HTTP server speaking the Graph media endpoints; and the canary."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tapeline.archive.models import MediaObject, StoredObject
from tapeline.errors import ConfigError
from tests.integration.whatsapp_support import (
    MediaFile,
    MockGraph,
    Running,
    body_of,
    envelope,
    mock_graph,
    running_recorder,
    whatsapp_config,
)


@pytest.fixture
def graph() -> Iterator[MockGraph]:
    with mock_graph() as server:
        yield server


@pytest.fixture
async def wa(tmp_path: Path, graph: MockGraph) -> Any:
    config = whatsapp_config(tmp_path, graph_url=graph.base_url)
    async with running_recorder(config) as running:
        yield running


def image_message(
    wamid: str, media_id: str, *, sha256: str | None, ts: int | None = None, caption: str = "pic"
) -> bytes:
    image: dict[str, Any] = {"mime_type": "image/jpeg", "id": media_id, "caption": caption}
    if sha256 is not None:
        image["sha256"] = sha256
    stamp = str(ts if ts is not None else int(time.time()))
    message = {
        "from": "972987654321",
        "id": wamid,
        "timestamp": stamp,
        "type": "image",
        "image": image,
    }
    return body_of(envelope({"messages": [message]}))


def scan_for(needle: bytes, roots: list[Path]) -> tuple[list[Path], int]:
    """Files under `roots` holding `needle` in clear, and how many files were read."""
    hits: list[Path] = []
    scanned = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                if needle in path.read_bytes():
                    hits.append(path)
    return hits, scanned


def media_rows(wa: Running, wamid: str) -> list[MediaObject]:
    record = wa.message(wamid)
    with wa.archive.index.read() as session:
        return list(
            session.execute(
                select(MediaObject).where(MediaObject.interaction_id == record["id"])
            ).scalars()
        )


def settled_state(wa: Running, wamid: str) -> bool:
    rows = media_rows(wa, wamid)
    return bool(rows) and all(r.state not in {"pending", "retrying"} for r in rows)


def stored_bytes(wa: Running, row: MediaObject) -> bytes:
    with wa.archive.index.read() as session:
        obj = session.get_one(StoredObject, row.object_id)
        assert obj.wrapped_key is not None
        return wa.archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)


async def test_media_is_fetched_checked_against_base64_sha256_and_stored_encrypted(
    wa: Running, graph: MockGraph
) -> None:
    data = os.urandom(5000)
    graph.media["m1"] = MediaFile(data=data)
    b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert (await wa.post(image_message("wamid.m1", "m1", sha256=b64))).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.m1"))
    [row] = media_rows(wa, "wamid.m1")
    assert row.state == "stored"
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_bytes(wa, row) == data
    assert len(wa.events("media.stored")) == 1
    assert graph.unauthorised == 0


async def test_expired_url_is_resolved_again(wa: Running, graph: MockGraph) -> None:
    data = os.urandom(1000)
    graph.media["m2"] = MediaFile(data=data, expired_urls=1)
    hexsha = hashlib.sha256(data).hexdigest()
    assert (await wa.post(image_message("wamid.m2", "m2", sha256=hexsha))).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.m2"))
    [row] = media_rows(wa, "wamid.m2")
    assert row.state == "stored"
    assert graph.media["m2"].lookups == 2


async def test_server_errors_and_truncated_downloads_are_recorded_and_retried(
    wa: Running, graph: MockGraph
) -> None:
    data = os.urandom(20000)
    graph.media["m3"] = MediaFile(data=data, lookup_failures=2, truncations=1)
    assert (await wa.post(image_message("wamid.m3", "m3", sha256=None))).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.m3"))
    [row] = media_rows(wa, "wamid.m3")
    assert row.state == "stored"
    assert stored_bytes(wa, row) == data
    failures = [e for e in wa.events("media.failed") if e["media_id"] == "m3"]
    assert len(failures) == 3  # two 500s and one truncated body
    assert not any(e["final"] for e in failures)


async def test_wrong_hash_keeps_the_file_and_raises_an_integrity_alarm(
    wa: Running, graph: MockGraph
) -> None:
    data = b"these are not the bytes you hashed"
    graph.media["m4"] = MediaFile(data=data)
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert (await wa.post(image_message("wamid.m4", "m4", sha256=wrong))).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.m4"))
    [row] = media_rows(wa, "wamid.m4")
    assert row.state == "mismatch"
    assert stored_bytes(wa, row) == data
    assert "whatsapp.media_integrity" in wa.alarms()


async def test_media_that_stays_gone_until_expiry_becomes_a_gap_and_an_alarm(
    wa: Running, graph: MockGraph
) -> None:
    graph.media["m5"] = MediaFile(data=b"x", gone=True)
    graph.media["m6"] = MediaFile(data=b"y")
    almost_expired = int(time.time()) - 7 * 24 * 3600 + 1
    body = image_message("wamid.m5", "m5", sha256=None, ts=almost_expired)
    assert (await wa.post(body)).status_code == 200
    old = image_message("wamid.m6", "m6", sha256=None, ts=almost_expired - 3600)
    assert (await wa.post(old)).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.m5") and settled_state(wa, "wamid.m6"))
    assert [r.state for r in media_rows(wa, "wamid.m5")] == ["failed"]
    assert [r.state for r in media_rows(wa, "wamid.m6")] == ["failed"]
    finals = [e for e in wa.events("media.failed") if e["final"]]
    assert {e["media_id"] for e in finals} == {"m5", "m6"}
    assert "whatsapp.media_gave_up" in wa.alarms()
    assert graph.media["m6"].lookups == 0  # never asked: already expired when it arrived


async def test_canary_text_and_media_never_appear_in_clear_on_disk_or_in_logs(
    wa: Running, graph: MockGraph, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "CANARY-7f3a9c1e-do-not-leak"
    media = (canary * 50).encode()
    graph.media["mc"] = MediaFile(data=media)
    text_doc = envelope(
        {
            "messages": [
                {
                    "from": "972987654321",
                    "id": "wamid.canary",
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": canary},
                }
            ]
        }
    )
    assert (await wa.post(body_of(text_doc))).status_code == 200
    assert (
        await wa.post(image_message("wamid.canary.img", "mc", sha256=None, caption=canary))
    ).status_code == 200
    await wa.settle(lambda: settled_state(wa, "wamid.canary.img"))
    assert wa.message("wamid.canary")["message"]["text"] == canary  # the index may hold it
    roots = [wa.config.storage.path, wa.config.storage.spool]
    hits, scanned = await asyncio.to_thread(scan_for, canary.encode(), roots)
    assert hits == []
    assert scanned >= 4  # the objects and the journal were really there to scan
    assert canary not in caplog.text


async def test_listener_refuses_to_start_without_an_app_secret(tmp_path: Path) -> None:
    config = whatsapp_config(tmp_path, graph_url="http://127.0.0.1:9/v21.0")
    secret_file = Path(config.whatsapp.app_secret_file or "")
    await asyncio.to_thread(secret_file.write_text, "\n# no secret here\n")
    with pytest.raises(ExceptionGroup) as failure:
        async with running_recorder(config):
            pass
    assert failure.group_contains(ConfigError)
