"""Real-peer helpers for the MQTT tests: a Mosquitto broker, a subscriber, a recorder process.

Mosquitto started as root drops privileges to the `mosquitto` user, so its folder (config,
persistence, certificates, password file) is a fresh temp folder owned by that user, not pytest's
`tmp_path` (mode 0700, owned by root). Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiomqtt
import jsonschema

from tapeline.archive.core import Archive
from tapeline.config import Config
from tapeline.daemon.recorder import Runtime
from tapeline.events.envelope import EventType
from tapeline.events.outbox import emit, pending
from tapeline.events.publisher import MqttPublisher
from tests.conftest import REPO, free_port

MOSQUITTO = "/usr/sbin/mosquitto"
SCHEMA = json.loads((REPO / "docs" / "events.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
START_TIMEOUT_S = 15.0


def _chown_mosquitto(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "mosquitto", "mosquitto")


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML for a test config (tables, arrays of tables, scalars, string lists)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        return json.dumps(str(value))

    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in value.items())
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"[[{key}]]")
                lines.extend(f"{k} = {scalar(v)}" for k, v in item.items())
        else:
            lines.insert(0, f"{key} = {scalar(value)}")
        lines.append("")
    return "\n".join(lines)


class Mosquitto:
    """One broker on a free loopback port, stopped by its PID."""

    def __init__(self, *, extra: str = "", port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tapeline-mqtt-"))
        self.dir.chmod(0o755)
        _chown_mosquitto(self.dir)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"persistence true\npersistence_location {self.dir}/\n"
            "log_dest stderr\nmax_queued_messages 50000\n" + (extra or "allow_anonymous true\n"),
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        self._reader: threading.Thread | None = None

    def file(self, name: str, data: bytes) -> Path:
        """Write a file the broker (running as `mosquitto`) can read."""
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o640)
        _chown_mosquitto(path)
        return path

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            self._wait_log("running")
        except AssertionError:
            self.stop()
            raise
        # Keep reading its log so the pipe never fills and blocks the broker.
        self._reader = threading.Thread(target=self._drain_log, args=(self.proc,), daemon=True)
        self._reader.start()

    def _drain_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(proc.stdout.fileno(), 65536):
                self.log.append(chunk.decode(errors="replace"))

    def _wait_log(self, marker: str) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    break
                chunk = os.read(self.proc.stdout.fileno(), 65536).decode(errors="replace")
                if not chunk:
                    break
                self.log.append(chunk)
                if marker in "".join(self.log):
                    return
        raise AssertionError(f"mosquitto did not log {marker!r}: {''.join(self.log)}")

    def stop(self) -> None:
        """SIGTERM (the broker saves its persistent sessions), then wait for the PID to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=START_TIMEOUT_S)
        if self._reader is not None:
            self._reader.join(timeout=START_TIMEOUT_S)  # ends at EOF, once the broker exited
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A subscriber on `tapeline/v1/#` (QoS 1, persistent session) that reconnects by itself."""

    def __init__(
        self,
        port: int,
        *,
        identifier: str = "test-collector",
        protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311,
        username: str | None = None,
        password: str | None = None,
        tls_context: Any = None,
    ) -> None:
        self.messages: list[Received] = []
        self._events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": port,
            "identifier": identifier,
            "protocol": protocol,
            "username": username,
            "password": password,
            "tls_context": tls_context,
            "clean_session": False,
        }
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="collector")
        async with asyncio.timeout(START_TIMEOUT_S):
            await self.subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(**self._kwargs) as client:
                    await client.subscribe("tapeline/v1/#", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        received = Received(str(message.topic), payload, bool(message.retain))
                        async with self._changed:
                            self.messages.append(received)
                            if "/event/" in received.topic:
                                self._events.append(received.json())
                            self._changed.notify_all()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # retry interval while the broker restarts

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 30.0
    ) -> list[Received]:
        """Wait until `predicate(messages)` holds."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return list(self.messages)

    def events(self) -> list[dict[str, Any]]:
        """Every event payload received so far, in arrival order."""
        return list(self._events)

    @property
    def event_count(self) -> int:
        return len(self._events)

    def on(self, topic_leaf: str) -> list[Received]:
        return [m for m in self.messages if m.topic.endswith("/" + topic_leaf)]


def validate_event(topic: str, event: dict[str, Any]) -> None:
    """The event matches docs/events.schema.json, and its topic matches its type."""
    VALIDATOR.validate(event)
    assert topic == f"tapeline/v1/{event['node_id']}/event/{event['type']}"


class RecorderProcess:
    """`tapeline recorder -c FILE` as a real process, killed or stopped by its PID."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=START_TIMEOUT_S)
        self.proc = None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=40)
        self.proc = None
        return code


@contextlib.asynccontextmanager
async def running_publisher(config: Config, archive: Archive) -> AsyncIterator[MqttPublisher]:
    """The recorder's publisher service, in this event loop, stopped in order at the end."""
    publisher = MqttPublisher(config)
    await publisher.start(Runtime(archive=archive, active_calls={}))
    task = asyncio.create_task(publisher.run(), name="mqtt")
    try:
        yield publisher
    finally:
        await publisher.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def emit_many(archive: Archive, count: int, *, per_transaction: int = 500) -> None:
    """Queue `count` schema-valid events (alarm.raised) the way any writer does."""
    done = 0
    while done < count:
        with archive.index.write() as session:
            for i in range(done, min(count, done + per_transaction)):
                emit(
                    session,
                    node_id=archive.node_id,
                    type_=EventType.ALARM_RAISED,
                    data={"code": f"test.{i}", "severity": "info", "message": f"event {i}"},
                )
        done = min(count, done + per_transaction)


def unsent(archive: Archive) -> int:
    with archive.index.read() as session:
        return len(pending(session, archive.node_id, limit=1_000_000))


def in_order_and_complete(events: list[dict[str, Any]], seqs: set[int]) -> None:
    """First arrivals are in `seq` order, every wanted seq arrived, duplicates share event_id."""
    first_seen: list[int] = []
    ids: dict[int, set[str]] = {}
    for event in events:
        if event["seq"] not in ids:
            first_seen.append(event["seq"])
        ids.setdefault(event["seq"], set()).add(event["event_id"])
    wanted = [s for s in first_seen if s in seqs]
    assert wanted == sorted(wanted)
    assert seqs <= set(ids)
    assert all(len(v) == 1 for v in ids.values())
