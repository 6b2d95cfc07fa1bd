"""Event types and the envelope every event travels in (DESIGN §7, MQTT)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

SCHEMA = "tapeline.event/1"


class EventType(StrEnum):
    """Every event type the appliance publishes."""

    CALL_STARTED = "call.started"
    CALL_ENDED = "call.ended"
    RECORDING_STORED = "recording.stored"
    RECORDING_FAILED = "recording.failed"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_SENT = "message.sent"
    MESSAGE_STATUS = "message.status"
    MEDIA_STORED = "media.stored"
    MEDIA_FAILED = "media.failed"
    HOLD_PLACED = "hold.placed"
    HOLD_RELEASED = "hold.released"
    RETENTION_PURGED = "retention.purged"
    ALARM_RAISED = "alarm.raised"
    ALARM_CLEARED = "alarm.cleared"


def envelope(  # noqa: PLR0913  # the envelope's fields, spelled out
    *,
    event_id: str,
    ts: datetime,
    node_id: str,
    seq: int,
    type_: str,
    data: dict[str, Any],
    parties: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON envelope; `parties` is merged into `data` only when the publisher is told to."""
    body = dict(data)
    if parties:
        body["parties"] = parties
    return {
        "schema": SCHEMA,
        "event_id": event_id,
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "node_id": node_id,
        "seq": seq,
        "type": type_,
        "data": body,
    }
