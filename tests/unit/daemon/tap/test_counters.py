"""The tap's counters reach both /metrics and the retained stats topic, under stable names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tapeline.archive.core import Archive
from tapeline.daemon.status import RecorderCollector
from tapeline.events.stats import PublisherCounters, collect_stats


def _figures() -> dict[str, int]:
    return {"packets_seen": 1234, "kernel_drops": 7, "calls_filed": 2}


def test_tap_counters_on_metrics(index_archive: Archive) -> None:
    registry = CollectorRegistry()
    registry.register(RecorderCollector(index_archive, {"tap": 1}, sources={"tap": _figures}))
    text = generate_latest(registry).decode()
    assert "tapeline_tap_packets_seen 1234.0" in text
    assert "tapeline_tap_kernel_drops 7.0" in text
    assert 'tapeline_calls_active{source="tap"} 1.0' in text


def test_tap_counters_in_stats(index_archive: Archive) -> None:
    stats = collect_stats(
        index_archive, active_calls=1, counters=PublisherCounters(), sources={"tap": _figures}
    )
    assert stats["tap_kernel_drops"] == 7
    assert stats["tap_packets_seen"] == 1234
    assert stats["active_calls"] == 1
