"""The recorder's loopback status listener: `/livez`, `/readyz`, `/metrics` and nothing else."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tapeline import __version__
from tapeline.archive.core import Archive
from tapeline.archive.models import Alarm, OutboxEvent
from tapeline.daemon.health import Health

HEALTH_JSON = "application/health+json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Service gauges (Runtime.gauges) exported as metrics: name -> (metric, help, scale to base unit).
GAUGE_METRICS: dict[str, tuple[str, str, float]] = {
    "clock_offset_s": ("tapeline_clock_offset_seconds", "System clock minus its time source", 1.0),
    "capture_loss_percent": (
        "tapeline_capture_loss_ratio",
        "Packets lost over the recent live calls",
        0.01,
    ),
    "calls_without_audio": (
        "tapeline_calls_without_audio",
        "Open SIPREC calls with no RTP for alarms.no_audio_seconds",
        1.0,
    ),
}
Gauges = Mapping[str, Callable[[], float | None]]


class RecorderCollector(Collector):
    """Metrics read at scrape time from the archive and the running recorder."""

    def __init__(
        self,
        archive: Archive,
        active_calls: dict[str, int],
        gauges: Gauges | None = None,
        sources: dict[str, Callable[[], dict[str, int]]] | None = None,
    ) -> None:
        self._archive = archive
        self._active = active_calls
        self._gauges = {} if gauges is None else gauges  # the live dict: services add to it later
        self._sources = sources if sources is not None else {}

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        """One scrape."""
        yield InfoMetricFamily("tapeline_build", "Tapeline build", value={"version": __version__})
        free = GaugeMetricFamily("tapeline_storage_free_bytes", "Free bytes", labels=["folder"])
        for name, path in (
            ("objects", self._archive.config.storage.path),
            ("spool", self._archive.config.storage.spool),
        ):
            if path.exists():
                free.add_metric([name], shutil.disk_usage(path).free)
        yield free
        with self._archive.index.read() as session:
            depth = session.execute(
                select(func.count()).where(
                    OutboxEvent.node_id == self._archive.node_id, OutboxEvent.sent_at.is_(None)
                )
            ).scalar_one()
            alarms = session.execute(
                select(func.count()).where(
                    Alarm.node_id == self._archive.node_id, Alarm.cleared_at.is_(None)
                )
            ).scalar_one()
        yield GaugeMetricFamily("tapeline_alarms_active", "Uncleared alarms", value=alarms)
        for name, (metric, doc, scale) in GAUGE_METRICS.items():
            read = self._gauges.get(name)
            value = None if read is None else read()
            if value is not None:  # unknown is absent, never a made-up 0
                yield GaugeMetricFamily(metric, doc, value=value * scale)
        yield GaugeMetricFamily(
            "tapeline_mqtt_outbox_messages", "Events not yet published", value=depth
        )
        calls = GaugeMetricFamily("tapeline_calls_active", "Open call sessions", labels=["source"])
        for source, count in sorted(self._active.items()):
            calls.add_metric([source], count)
        yield calls
        for source_name, figures in sorted(self._sources.items()):
            for name, value in sorted(figures().items()):
                yield GaugeMetricFamily(
                    f"tapeline_{source_name}_{name}", f"{source_name}: {name}", value=value
                )


def create_status_app(
    archive: Archive,
    health: Health,
    active_calls: dict[str, int],
    gauges: Gauges | None = None,
    sources: dict[str, Callable[[], dict[str, int]]] | None = None,
) -> Starlette:
    """The status ASGI app (served on `node.status_listen`, loopback by default)."""
    registry = CollectorRegistry()
    registry.register(RecorderCollector(archive, active_calls, gauges, sources))

    async def livez(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(_: Request) -> Response:
        code, body = health.report(writes=True, details=True)
        return JSONResponse(body, status_code=code, media_type=HEALTH_JSON)

    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=PROMETHEUS_TEXT)

    return Starlette(
        routes=[
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )
