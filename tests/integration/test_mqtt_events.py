"""A recorder process publishing a call and a WhatsApp message to a real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeline.archive.core import Archive
from tapeline.archive.synthetic import file_synthetic_call, file_synthetic_message
from tapeline.config import parse_config
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit
from tests.conftest import config_dict
from tests.integration.mqtt_support import (
    Collector,
    Mosquitto,
    RecorderProcess,
    running_publisher,
    to_toml,
    validate_event,
)

LINE = "+442071230001"
CALLER = "+14155550123"
NODE = "test-node"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    server = Mosquitto()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _produce(archive: Archive) -> None:
    """What a SIPREC call and then a WhatsApp message leave in the outbox."""
    with archive.index.write() as session:
        emit(
            session,
            node_id=archive.node_id,
            type_=EventType.CALL_STARTED,
            data={"call_ref": "c-1", "source": "synthetic", "direction": "inbound"},
        )
    with archive.index.write() as session:
        emit(
            session,
            node_id=archive.node_id,
            type_=EventType.CALL_ENDED,
            data={"call_ref": "c-1", "duration_ms": 3000},
        )
    started = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    file_synthetic_call(archive, line=LINE, counterparty=CALLER, started_at=started)
    file_synthetic_message(
        archive, line=LINE, counterparty=CALLER, started_at=started, text="hello", wamid="wamid.1"
    )


def _status(sub: Collector) -> list[bytes]:
    return [m.payload for m in sub.on("status")]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_call_and_message_events_arrive_in_order_schema_valid_and_will_says_offline(
    tmp_path: Path, broker: Mosquitto, protocol: str
) -> None:
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker.port}", "protocol": protocol}
    config_path = tmp_path / "tapeline.toml"
    config_path.write_text(to_toml(data), encoding="utf-8")
    config = parse_config(data, source="test")
    recorder = RecorderProcess(config_path, tmp_path / "recorder.log")
    # The subscriber speaks MQTT 3.1.1 only: everything it needs is in the JSON payload.
    async with Collector(broker.port) as sub:
        recorder.start()
        try:
            await sub.wait_for(lambda _: b"online" in _status(sub))
            archive = await asyncio.to_thread(Archive.open, config, migrate=False)
            try:
                await asyncio.to_thread(_produce, archive)
            finally:
                archive.close()
            await sub.wait_for(lambda _: sub.event_count >= 4)
            events = [m for m in sub.messages if "/event/" in m.topic]
            assert [e.json()["type"] for e in events] == [
                "call.started",
                "call.ended",
                "recording.stored",
                "message.received",
            ]
            seqs = [e.json()["seq"] for e in events]
            assert seqs == sorted(seqs)
            assert len(set(seqs)) == len(seqs)
            for message in events:
                validate_event(message.topic, message.json())
                assert not message.retain
                assert "parties" not in message.json()["data"]
            for message in sub.messages:  # no number anywhere unless include_parties
                assert CALLER[1:] not in message.topic + message.payload.decode()
                assert LINE[1:] not in message.topic + message.payload.decode()
            assert events[2].json()["data"]["duration_ms"] == 3000
            info = sub.on("info")[-1].json()
            assert info["node_id"] == NODE
            assert info["storage_mode"] == "audit-trail"
            assert info["mqtt_protocol"] == protocol
            stats = sub.on("stats")[-1].json()
            assert all(isinstance(v, int | float) for v in stats.values())
            assert stats["active_calls"] == 0

            recorder.kill9()
            await sub.wait_for(lambda _: _status(sub)[-1] == b"offline")
        finally:
            recorder.stop()
    # A late subscriber finds the Last Will retained.
    async with Collector(broker.port, identifier="late") as late:
        await late.wait_for(lambda _: bool(late.on("status")))
        assert [(m.payload, m.retain) for m in late.on("status")] == [(b"offline", True)]


async def test_orderly_stop_publishes_retained_offline_and_parties_only_when_configured(
    tmp_path: Path, broker: Mosquitto
) -> None:
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker.port}", "include_parties": True}
    config = parse_config(data, source="test")
    archive = Archive.open(config)
    try:
        async with Collector(broker.port) as sub:
            async with running_publisher(config, archive) as publisher:
                await sub.wait_for(lambda _: b"online" in _status(sub))
                assert publisher.health()[0] == "pass"
                await asyncio.to_thread(
                    file_synthetic_message,
                    archive,
                    line=LINE,
                    counterparty=CALLER,
                    started_at=datetime(2026, 5, 1, tzinfo=UTC),
                    text="secret text",
                )
                await sub.wait_for(lambda _: sub.event_count >= 1)
            await sub.wait_for(lambda _: _status(sub)[-1] == b"offline")
        message = next(m for m in sub.messages if "/event/" in m.topic)
        validate_event(message.topic, message.json())
        parties = message.json()["data"]["parties"]
        assert parties["line"]["number"] == LINE
        assert CALLER[1:] not in message.topic
        assert b"secret text" not in message.payload
    finally:
        archive.close()
