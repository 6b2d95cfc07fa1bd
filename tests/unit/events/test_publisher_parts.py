"""Broker URL, topics, outbox bounds, the event schema file and the service wiring."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tapeline.archive.core import Archive
from tapeline.archive.models import OutboxEvent, utcnow
from tapeline.config import BrokerAddress, parse_broker_url, parse_config
from tapeline.daemon.services import build_services
from tapeline.errors import ConfigError
from tapeline.events.backlog import backlog, enforce_bounds
from tapeline.events.envelope import EventType
from tapeline.events.publisher import MqttPublisher
from tapeline.events.topics import Topics
from tests.conftest import REPO, config_dict
from tests.integration.mqtt_support import emit_many


def test_broker_url_forms() -> None:
    assert parse_broker_url("mqtts://user@broker.example:8884") == BrokerAddress(
        tls=True, host="broker.example", port=8884, username="user"
    )
    assert parse_broker_url("mqtts://broker") == BrokerAddress(
        tls=True, host="broker", port=8883, username=None
    )
    assert parse_broker_url("mqtt://127.0.0.1").port == 1883


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://broker", "expected mqtt://HOST[:PORT] or mqtts://[USER@]HOST[:PORT]"),
        ("mqtts://user:secret@broker", "the password goes in mqtt.password_file"),
        ("mqtt://broker:port", "bad port"),
        ("mqtt://broker/topic", "expected HOST[:PORT] and nothing after it"),
    ],
)
def test_bad_broker_url_names_the_key(tmp_path: Path, url: str, reason: str) -> None:
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": url}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="t.toml")
    assert caught.value.key == "mqtt.url"
    assert reason in caught.value.reason
    assert "secret" not in str(caught.value)


def test_topics_carry_only_node_and_type() -> None:
    topics = Topics(node_id="tl-hq-01")
    assert topics.status == "tapeline/v1/tl-hq-01/status"
    assert topics.event("call.ended") == "tapeline/v1/tl-hq-01/event/call.ended"
    assert topics.event("+4420/#") == "tapeline/v1/tl-hq-01/event/other"


def test_every_event_type_has_a_schema_and_a_section_in_the_docs() -> None:
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text(encoding="utf-8"))
    text = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    for type_ in EventType:
        assert str(type_) in schema["$defs"]
        assert f"### `{type_}`" in text
    assert set(schema["properties"]["type"]["enum"]) == {str(t) for t in EventType}


def test_build_services_adds_the_publisher_only_with_a_url(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    assert [s.name for s in build_services(parse_config(data, source="t"))] == [
        "diskwatch",
        "alarmwatch",
        "siprec",
        "jobs",
    ]
    data["mqtt"] = {"url": "mqtt://127.0.0.1:1883"}
    services = build_services(parse_config(data, source="t"))
    assert [s.name for s in services] == ["diskwatch", "alarmwatch", "siprec", "mqtt", "jobs"]
    assert isinstance(services[3], MqttPublisher)


def test_bounds_drop_the_oldest_rows_past_max_rows(archive: Archive) -> None:
    emit_many(archive, 25, per_transaction=10)
    dropped = enforce_bounds(archive, max_age_s=3600, max_rows=10)
    assert (dropped.count, dropped.first_seq, dropped.last_seq) == (15, 1, 15)
    assert backlog(archive).depth == 10
    assert enforce_bounds(archive, max_age_s=3600, max_rows=10).count == 0


def test_bounds_drop_unsent_rows_past_max_age_and_prune_old_sent_ones(archive: Archive) -> None:
    emit_many(archive, 6)
    old = utcnow() - timedelta(hours=2)
    with archive.index.write() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.seq <= 3).values(ts=old))
        session.execute(update(OutboxEvent).where(OutboxEvent.seq == 1).values(sent_at=old))
    dropped = enforce_bounds(archive, max_age_s=3600, max_rows=100)
    assert (dropped.count, dropped.first_seq, dropped.last_seq) == (2, 2, 3)
    with archive.index.read() as session:
        assert session.query(OutboxEvent).count() == 3
