"""The recorder's MQTT publisher: drains this node's outbox to the broker (operations §2).

Theory of operation: two loops run side by side. The *connection* loop connects (Last Will =
retained `offline`), publishes retained `online`, `info` and `stats`, then drains the outbox in
`seq` order in batches, marking a row sent only after its PUBACK, and only the unbroken prefix of
a batch, so a resend restarts at the first unacknowledged row (at-least-once, consumers dedupe on
`event_id`). Any broker error ends the connection; the loop waits (exponential backoff with jitter,
1 s up to `mqtt.reconnect_max_delay`) and tries again, forever. The *housekeeping* loop runs
whether or not the broker is there: it enforces the outbox bounds (a counted, alarmed drop),
raises or clears the backlog alarm and refreshes `stats`. Nothing here is awaited by a capture
path: they only write outbox rows, so recording never waits for the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tapeline import __version__
from tapeline.archive.core import Archive
from tapeline.archive.models import utcnow
from tapeline.archive.nodes import clear_alarm, raise_alarm
from tapeline.config import BrokerAddress, Config, MqttConfig, parse_broker_url, read_secret
from tapeline.errors import ConfigError, PublishError, StorageError
from tapeline.events.backlog import Dropped, backlog, enforce_bounds, mark_sent
from tapeline.events.envelope import SCHEMA, EventType
from tapeline.events.outbox import as_envelope, pending
from tapeline.events.stats import Number, PublisherCounters, collect_stats, read_gauges
from tapeline.events.topics import STATUS_OFFLINE, STATUS_ONLINE, Topics

log = logging.getLogger(__name__)

BATCH = 100
POLL_S = 0.2
BACKOFF_MIN_S = 1.0
KEEPALIVE_S = 15
STOP_PUBLISH_TIMEOUT_S = 3.0
EVENT_EXPIRY_S = 86400
BACKLOG_ALARM_FRACTION = 0.5
ALARM_DROPPED = "mqtt.outbox_dropped"
ALARM_BACKLOG = "mqtt.outbox_backlog"
MAX_HOUSEKEEPING_S = 60.0


class PublisherRuntime(Protocol):
    """What the publisher needs from the recorder's `Runtime` (events/ never imports daemon/)."""

    archive: Archive
    active_calls: dict[str, int]
    health_checks: dict[str, Callable[[], tuple[str, str]]]
    gauges: dict[str, Callable[[], float | None]]
    metrics: dict[str, Callable[[], dict[str, int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outgoing:
    row_id: int
    topic: str
    payload: bytes
    event_id: str


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails.

    paho-mqtt 2.2.0 (`Client._ssl_wrap_socket`) leaves the socket open when `do_handshake()`
    raises, so every refused attempt (wrong CA, wrong name) would leak a descriptor until GC.
    """

    def do_handshake(self, block: bool = False) -> None:  # noqa: FBT001, FBT002  # stdlib signature
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker's certificate and host name (system CAs or `mqtt.ca_file`), TLS >= 1.2.

    Raises:
        ConfigError: a CA, certificate or key file cannot be used.
    """
    key = "mqtt.ca_file"
    try:
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslsocket_class = _ClosingSSLSocket
        if cfg.client_cert_file is not None:
            key = "mqtt.client_cert_file"
            keyfile = str(cfg.client_key_file) if cfg.client_key_file else None
            context.load_cert_chain(str(cfg.client_cert_file), keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("config", key, f"cannot load: {exc}") from exc
    if not cfg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.contextmanager
def _map_mqtt_errors() -> Iterator[None]:
    try:
        yield
    except aiomqtt.MqttError as exc:
        raise PublishError(str(exc)) from exc


class MqttPublisher:
    """A recorder `Service` that publishes status, info, stats and outbox events."""

    name = "mqtt"

    def __init__(self, config: Config) -> None:
        if config.mqtt.url is None:
            raise ValueError("mqtt.url is not set")
        self._config = config
        self._cfg = config.mqtt
        self._address: BrokerAddress = parse_broker_url(config.mqtt.url)
        self._topics = Topics(node_id=config.node.id)
        self._runtime: PublisherRuntime | None = None
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._client: aiomqtt.Client | None = None
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._last_error = "not connected yet"
        self._backlog_depth = 0
        self._started_at = utcnow()
        self._changed = asyncio.Condition()
        self._idle = False
        self.counters = PublisherCounters()

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        return self._client is not None

    async def wait_until(self, *, connected: bool, idle: bool = False) -> None:
        """Wait until the session is (not) up and, with `idle`, the outbox was found empty."""
        await self.wait_for(lambda p: p.connected == connected and (p.idle or not idle))

    async def wait_for(self, predicate: Callable[[MqttPublisher], bool]) -> None:
        """Wait until `predicate(self)` holds; it is checked after every state change."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    @property
    def idle(self) -> bool:
        """True when the last look at the outbox found nothing to send."""
        return self._idle

    async def _notify(self, *, idle: bool | None = None) -> None:
        async with self._changed:
            if idle is not None:
                self._idle = idle
            self._changed.notify_all()

    # --- Service protocol -------------------------------------------------------------------

    async def start(self, runtime: PublisherRuntime) -> None:
        """Read the secrets and register the `/readyz` check; connecting happens in `run()`.

        Raises:
            ConfigError: the password, CA, certificate or key file cannot be used.
        """
        cfg = self._cfg
        if cfg.password_file is not None:
            self._password = read_secret(cfg.password_file, key="mqtt.password_file")
        if self._address.tls:
            self._tls = tls_context(cfg)
        self._runtime = runtime
        runtime.health_checks["mqtt"] = self.health

    async def run(self) -> None:
        """Keep a broker session and the outbox housekeeping going until stopped."""
        try:
            async with asyncio.TaskGroup() as group:
                chores = group.create_task(self._housekeeping(), name="mqtt.housekeeping")
                group.create_task(self._connection_loop(), name="mqtt.connection")
                await self._stopping.wait()
                chores.cancel()
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Publish retained `offline` and disconnect cleanly (a clean DISCONNECT fires no will)."""
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_PUBLISH_TIMEOUT_S * 2):
                await self._done.wait()

    def reload(self, config: Config) -> None:
        """Lines and trunks do not concern the publisher."""
        del config

    def health(self) -> tuple[str, str]:
        """`warn` (never `fail`) while the broker is away: recording goes on without it."""
        host = f"{self._address.host}:{self._address.port}"
        if self._client is None:
            return "warn", f"broker {host} away ({self._last_error}); {self._backlog_depth} waiting"
        return "pass", f"connected to {host}; {self._backlog_depth} events waiting"

    # --- connection ------------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._cfg
        v5 = cfg.protocol == "5"
        context = self._tls
        if context is not None and not cfg.tls_verify:
            log.warning("mqtt: broker certificate NOT verified (mqtt.tls_verify = false)")
        return aiomqtt.Client(
            self._address.host,
            self._address.port,
            username=self._address.username,
            password=self._password,
            identifier=f"tapeline-{self._config.node.id}",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self._topics.status, STATUS_OFFLINE, qos=1, retain=True),
            clean_session=None if v5 else True,
            keepalive=KEEPALIVE_S,
            max_inflight_messages=BATCH,
            tls_context=context,
            logger=logging.getLogger("tapeline.events.paho"),
        )

    async def _connection_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                failures = 0
            except* (PublishError, StorageError) as group:
                self._last_error = str(group.exceptions[0])
                failures += 1
                self.counters.mqtt_failures_total += 1
                log.warning(
                    "mqtt: broker %s:%d unavailable: %s",
                    self._address.host,
                    self._address.port,
                    self._last_error,
                )
            except* Exception as group:
                # Last-resort supervisor: a publisher bug must never stop the recording.
                self._last_error = f"internal error: {group.exceptions[0]!r}"
                failures += 1
                self.counters.mqtt_failures_total += 1
                log.exception("mqtt: publisher session failed; retrying")
            await self._notify()
            if self._stopping.is_set():
                return
            delay = min(self._cfg.reconnect_max_delay, BACKOFF_MIN_S * 2 ** max(0, failures - 1))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311  # jitter, not cryptography
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _session(self) -> None:
        client = self._make_client()
        with _map_mqtt_errors():
            async with client:
                self.counters.mqtt_connects_total += 1
                log.info("mqtt: connected to %s:%d", self._address.host, self._address.port)
                await client.publish(self._topics.status, STATUS_ONLINE, qos=1, retain=True)
                await client.publish(self._topics.info, self._info(), qos=1, retain=True)
                self._client = client
                await self._notify()
                try:
                    await self._publish_stats()
                    async with asyncio.TaskGroup() as group:
                        watch = group.create_task(self._watch(client), name="mqtt.watch")
                        drain = group.create_task(self._drain(client), name="mqtt.drain")
                        await self._stopping.wait()
                        watch.cancel()
                        drain.cancel()
                    await client.publish(
                        self._topics.status,
                        STATUS_OFFLINE,
                        qos=1,
                        retain=True,
                        timeout=STOP_PUBLISH_TIMEOUT_S,
                    )
                finally:
                    self._client = None
                    await self._notify(idle=False)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        # Nothing is subscribed: the iterator only ends (with MqttError) when the broker goes.
        with _map_mqtt_errors():
            async for _ in client.messages:
                pass

    # --- draining --------------------------------------------------------------------------

    def _next_batch(self, archive: Archive) -> list[_Outgoing]:
        with archive.index.read() as session:
            rows = pending(session, archive.node_id, limit=BATCH)
            return [
                _Outgoing(
                    row_id=row.id,
                    topic=self._topics.event(row.type),
                    payload=json.dumps(
                        as_envelope(row, include_parties=self._cfg.include_parties),
                        separators=(",", ":"),
                        ensure_ascii=False,
                    ).encode(),
                    event_id=row.event_id,
                )
                for row in rows
            ]

    def _properties(self, out: _Outgoing) -> Properties | None:
        if self._cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho
        props.MessageExpiryInterval = EVENT_EXPIRY_S
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1
        props.UserProperty = [("schema", SCHEMA), ("event_id", out.event_id)]
        return props

    async def _drain(self, client: aiomqtt.Client) -> None:
        archive = self._archive()
        while True:
            batch = await asyncio.to_thread(self._next_batch, archive)
            if not batch:
                await self._notify(idle=True)
                await asyncio.sleep(POLL_S)
                continue
            await self._notify(idle=False)
            results = await asyncio.gather(
                *(
                    client.publish(out.topic, out.payload, qos=1, properties=self._properties(out))
                    for out in batch
                ),
                return_exceptions=True,
            )
            acked: list[int] = []
            failure: BaseException | None = None
            for out, result in zip(batch, results, strict=True):
                if result is not None:
                    failure = result
                    break
                acked.append(out.row_id)
            await asyncio.to_thread(mark_sent, archive, acked)
            self.counters.events_published_total += len(acked)
            if isinstance(failure, aiomqtt.MqttError):
                raise PublishError(f"publish failed: {failure}") from failure
            if failure is not None:
                raise failure

    # --- housekeeping ----------------------------------------------------------------------

    def _archive(self) -> Archive:
        if self._runtime is None:
            raise RuntimeError("the publisher was not started")
        return self._runtime.archive

    def _info(self) -> bytes:
        cfg = self._config
        info: dict[str, Any] = {
            "node_id": cfg.node.id,
            "version": __version__,
            "started_at": self._started_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "storage_mode": self._archive().storage_mode,
            "listeners": {
                "siprec": list(cfg.siprec.listen),
                "tap": list(cfg.tap.interfaces),
                "whatsapp": cfg.whatsapp.listen,
                "status": cfg.node.status_listen,
            },
            "event_schema": SCHEMA,
            "event_types": [str(t) for t in EventType],
            "mqtt_protocol": cfg.mqtt.protocol,
        }
        return json.dumps(info, separators=(",", ":")).encode()

    def _bounds(self, archive: Archive) -> Dropped:
        dropped = enforce_bounds(
            archive, max_age_s=self._cfg.outbox_max_age, max_rows=self._cfg.outbox_max_rows
        )
        if dropped.count:
            self.counters.outbox_dropped_total += dropped.count
            message = (
                f"outbox over its bounds: {dropped.count} events dropped unpublished "
                f"(seq {dropped.first_seq}..{dropped.last_seq}); "
                f"{self.counters.outbox_dropped_total} since start"
            )
            log.error("mqtt: %s", message)
            raise_alarm(archive, code=ALARM_DROPPED, severity="critical", message=message)
        waiting = backlog(archive)
        self._backlog_depth = waiting.depth
        high = waiting.depth >= self._cfg.outbox_max_rows * BACKLOG_ALARM_FRACTION or (
            waiting.age_s(utcnow()) >= self._cfg.outbox_max_age * BACKLOG_ALARM_FRACTION
        )
        if high:
            raise_alarm(
                archive,
                code=ALARM_BACKLOG,
                severity="warning",
                message=f"{waiting.depth} events wait for the broker",
            )
        elif waiting.depth == 0:
            clear_alarm(archive, code=ALARM_BACKLOG)
            if self.connected:
                clear_alarm(archive, code=ALARM_DROPPED)
        return dropped

    def _stats(self) -> dict[str, Number]:
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("the publisher was not started")
        return collect_stats(
            runtime.archive,
            active_calls=sum(runtime.active_calls.values()),
            counters=self.counters,
            gauges=read_gauges(runtime.gauges),
            sources=runtime.metrics,
        )

    async def _publish_stats(self) -> None:
        stats = await asyncio.to_thread(self._stats)
        client = self._client
        if client is None:
            return
        with _map_mqtt_errors():
            await client.publish(self._topics.stats, json.dumps(stats).encode(), qos=1, retain=True)

    async def _housekeeping(self) -> None:
        archive = self._archive()
        period = min(self._cfg.stats_interval, MAX_HOUSEKEEPING_S)
        while True:
            try:
                await asyncio.to_thread(self._bounds, archive)
                await self._notify()
                await self._publish_stats()
            except PublishError:
                pass  # the connection loop sees the same broker failure and reports it
            except (StorageError, OSError) as exc:
                log.warning("mqtt: outbox housekeeping failed: %s", exc)
            await asyncio.sleep(period)
