"""The retained `stats` topic: one flat JSON object of numbers (operations §2.1, §2.9).

Flat, numeric and stable in name so mqtt2prometheus, Telegraf and Zabbix JSONPath items read it
without a schema. Figures come from the index (shared by every process of the node) and from the
recorder's own counters.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm, Interaction, Stream, utcnow
from tapeline.events.backlog import backlog

Number = int | float
# 1 while an alarm of the family is active, else 0: flat flags a Zabbix trigger or a Prometheus
# rule can use without parsing alarm events. A family is a code or a code prefix ending in ".".
ALARM_FLAGS: dict[str, tuple[str, ...]] = {
    "alarm_capture_loss": ("capture.loss",),
    "alarm_no_audio": ("capture.no_audio",),
    "alarm_integrity": ("integrity.",),
    "alarm_clock": ("clock.",),
    "alarm_disk": ("disk.", "storage."),
}


def _in_family(code: str, family: tuple[str, ...]) -> bool:
    return any(code.startswith(f) if f.endswith(".") else code == f for f in family)


def read_gauges(gauges: Mapping[str, Callable[[], float | None]]) -> dict[str, Number]:
    """The services' own figures; unknown ones (None) are left out rather than faked."""
    values = {name: read() for name, read in gauges.items()}
    return {name: value for name, value in values.items() if value is not None}


@dataclass(slots=True, kw_only=True)
class PublisherCounters:
    """What the publisher counts itself (since the process started)."""

    events_published_total: int = 0
    outbox_dropped_total: int = 0
    mqtt_connects_total: int = 0
    mqtt_failures_total: int = 0


def collect_stats(
    archive: Archive,
    *,
    active_calls: int,
    counters: PublisherCounters,
    gauges: Mapping[str, Number] | None = None,
    sources: Mapping[str, Callable[[], Mapping[str, int]]] | None = None,
) -> dict[str, Number]:
    """Gather the node's figures (blocking: run it in a thread).

    `sources` are capture paths' own counters (the tap's packets, kernel drops...), published as
    `<source>_<name>`, the same figures /metrics shows as `tapeline_<source>_<name>`.
    """
    node = archive.node_id
    with archive.index.read() as session:
        filed = dict(
            session.execute(
                select(Interaction.kind, func.count(Interaction.id))
                .where(Interaction.source_node == node)
                .group_by(Interaction.kind)
            ).all()
        )
        lost = session.execute(
            select(func.coalesce(func.sum(Stream.quality["lost"].as_integer()), 0))
            .join(Interaction, Interaction.id == Stream.interaction_id)
            .where(Interaction.source_node == node)
        ).scalar_one()
        codes = list(
            session.execute(
                select(Alarm.code).where(Alarm.node_id == node, Alarm.cleared_at.is_(None))
            ).scalars()
        )
    waiting = backlog(archive)
    folder = archive.config.storage.path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the object folder appears with the first record
    disk = shutil.disk_usage(folder)
    extra = {
        f"{source}_{name}": value
        for source, figures in sorted((sources or {}).items())
        for name, value in figures().items()
    }
    return {
        **extra,
        "active_calls": active_calls,
        "calls_filed_total": int(filed.get("call", 0)),
        "messages_filed_total": int(filed.get("message", 0)),
        "capture_failures_total": int(filed.get("capture_failure", 0)),
        "packets_lost_total": int(lost),
        "disk_used_bytes": disk.used,
        "disk_free_bytes": disk.free,
        "disk_used_ratio": round(disk.used / disk.total, 4) if disk.total else 0.0,
        "alarms_active": len(codes),
        "outbox_depth": waiting.depth,
        "outbox_oldest_age_s": round(waiting.age_s(utcnow()), 3),
        "outbox_dropped_total": counters.outbox_dropped_total,
        "events_published_total": counters.events_published_total,
        "mqtt_connects_total": counters.mqtt_connects_total,
        "mqtt_failures_total": counters.mqtt_failures_total,
        **{
            flag: int(any(_in_family(code, family) for code in codes))
            for flag, family in ALARM_FLAGS.items()
        },
        **(gauges or {}),
    }
