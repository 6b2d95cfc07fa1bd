"""The recorder runtime: one asyncio program, one TaskGroup, an ordered stop.

Theory of operation: `run()` opens the archive (migrating the index), binds every listener, and
only then tells systemd READY=1. The watchdog is pinged from the event loop itself, so a blocked
loop stops the pings and systemd restarts us; the broker or the network never gate it. SIGTERM
starts an ordered stop (listeners close, open sessions are filed, journals sealed, then the rest is
cancelled) within `STOP_TIMEOUT_S`. SIGHUP re-reads `[[lines]]` and `[[trunks]]` without touching
open sessions. Capture paths (SIPREC, tap, WhatsApp) plug in as `Service`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import uvicorn

from tapeline.archive.core import Archive
from tapeline.archive.nodes import heartbeat
from tapeline.config import Config, load_config
from tapeline.daemon.health import Health
from tapeline.daemon.status import create_status_app
from tapeline.errors import ConfigError
from tapeline.httpserver import EmbeddedServer
from tapeline.sdnotify import sd_notify, watchdog_interval

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 25.0
HEARTBEAT_S = 15.0


@dataclass(slots=True)
class Runtime:
    """What a service gets from the recorder when it starts."""

    archive: Archive
    active_calls: dict[str, int]
    health_checks: dict[str, Callable[[], tuple[str, str]]] = field(default_factory=dict)
    # Figures a service measures itself, published in the `stats` topic (None: unknown, left out).
    gauges: dict[str, Callable[[], float | None]] = field(default_factory=dict)
    metrics: dict[str, Callable[[], dict[str, int]]] = field(default_factory=dict)
    """Per capture path, counters exported as `tapeline_<path>_<name>` on /metrics."""


class Service(Protocol):
    """A capture path or job runner plugged into the recorder."""

    name: str

    async def start(self, runtime: Runtime) -> None:
        """Bind sockets and open sources; return once ready to receive (before READY=1)."""
        ...

    async def run(self) -> None:
        """Work until cancelled."""
        ...

    async def stop(self) -> None:
        """Stop accepting, finish and file what is open."""
        ...

    def reload(self, config: Config) -> None:
        """Take new lines and trunks."""
        ...


class Recorder:
    """The recorder process."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        services: list[Service] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.services: list[Service] = services or []
        self.active_calls: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._status_server: EmbeddedServer | None = None
        self.archive: Archive | None = None
        self.ready = asyncio.Event()

    def request_stop(self) -> None:
        """Begin the ordered stop (SIGTERM, SIGINT, or a test)."""
        self._stop.set()

    def _reload(self) -> None:
        if self.config_path is None:
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)  # noqa: TRY400
            return
        self.config = self.config.model_copy(update={"lines": fresh.lines, "trunks": fresh.trunks})
        for service in self.services:
            service.reload(self.config)
        log.info("reloaded lines and trunks", extra={"lines": len(fresh.lines)})

    def _make_status_server(self, runtime: Runtime) -> EmbeddedServer:
        host, port = self.config.node.status_address
        health = Health(runtime.archive, extra=runtime.health_checks)
        app = create_status_app(
            runtime.archive, health, self.active_calls, runtime.gauges, runtime.metrics
        )
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        return EmbeddedServer(config)

    def _started_check(self) -> tuple[str, str]:
        if self.ready.is_set():
            return "pass", "every service started"
        return "fail", "starting"

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _heartbeat(self, archive: Archive) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            status = {"active_calls": sum(self.active_calls.values())}
            await asyncio.to_thread(heartbeat, archive, status=status)
            sd_notify(f"STATUS={status['active_calls']} calls active")

    async def run(self) -> None:
        """Run until asked to stop."""
        archive = await asyncio.to_thread(Archive.open, self.config)
        self.archive = archive
        await asyncio.to_thread(heartbeat, archive, status={"active_calls": 0}, starting=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            async with asyncio.TaskGroup() as group:
                runtime = Runtime(archive=archive, active_calls=self.active_calls)
                # The status listener answers while services still start (crash recovery can
                # take a while): until every listener is bound, /readyz fails with "starting".
                runtime.health_checks["started"] = self._started_check
                status = self._status_server = self._make_status_server(runtime)
                status_task = group.create_task(status.serve(), name="status")
                for service in self.services:
                    await service.start(runtime)
                if not await status.wait_bound(status_task):
                    log.error(
                        "status listener %s could not be bound", self.config.node.status_listen
                    )
                    raise SystemExit(1)
                for service in self.services:
                    group.create_task(service.run(), name=service.name)
                group.create_task(self._watchdog(), name="watchdog")
                group.create_task(self._heartbeat(archive), name="heartbeat")
                sd_notify("READY=1", "STATUS=recording")
                self.ready.set()
                log.info("recorder ready", extra={"node": archive.node_id})
                await self._stop.wait()
                sd_notify("STOPPING=1")
                await self._shutdown(group)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            archive.close()
            log.info("recorder stopped")

    async def _shutdown(self, group: asyncio.TaskGroup) -> None:
        del group
        async with asyncio.timeout(STOP_TIMEOUT_S):
            for service in reversed(self.services):
                await service.stop()
        if self._status_server is not None:
            self._status_server.should_exit = True
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current and task.get_name() in {"watchdog", "heartbeat"} | {
                s.name for s in self.services
            }:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
