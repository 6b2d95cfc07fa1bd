"""A recorder process raises and clears capture alarms, and Mosquitto carries them to monitoring.

A SIPREC session is signalled over real UDP with no media: after `alarms.no_audio_seconds` the
recorder raises `capture.no_audio`, `/readyz` and `stats` show it, and RTP sent to the answered
port clears it. Then calls with loss, filed as this node's captures, raise `capture.loss`, and
clean calls clear it. Every alarm event is checked against docs/events.schema.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapeline.archive.core import Archive
from tapeline.archive.models import StoredObject
from tapeline.archive.synthetic import file_synthetic_call
from tapeline.config import Config, parse_config
from tapeline.daemon.alarmwatch import AlarmWatch
from tapeline.daemon.health import Health
from tapeline.daemon.jobs import JobsService
from tapeline.daemon.recorder import Recorder, Runtime, Service
from tapeline.daemon.timesync import ClockReading
from tapeline.events.publisher import MqttPublisher
from tapeline.proto.sip import SipResponse, parse_datagram
from tests.conftest import config_dict, flip_a_byte
from tests.integration.mqtt_support import (
    Collector,
    Mosquitto,
    Received,
    RecorderProcess,
    running_publisher,
    to_toml,
    validate_event,
)
from tests.unit.daemon.siprec.test_core import _request, _siprec_body

pytestmark = pytest.mark.slow
NO_AUDIO_S = 2.0
RTP_INTERVAL_S = 0.02
NOW = datetime(2026, 5, 2, 0, 0, tzinfo=UTC)
_M_LINE = re.compile(r"^m=audio (\d+) ", re.MULTILINE)


def _config(tmp_path: Path, broker_port: int) -> tuple[Path, Config]:
    data = config_dict(tmp_path)
    low = random.randrange(40000, 59000, 2)  # noqa: S311  # spreads concurrent runs apart
    data["siprec"]["rtp_ports"] = f"{low}-{low + 199}"
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker_port}", "stats_interval": 0.5}
    data["alarms"] = {
        "no_audio_seconds": NO_AUDIO_S,
        "check_interval_s": 0.5,
        "capture_loss_percent": 1.0,
        "capture_loss_window": 2,
        "clock_source": "none",  # the host's clock is not what this test is about
    }
    path = tmp_path / "tapeline.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path, parse_config(data, source="test")


def _alarms(sub: Collector, type_: str, code: str) -> list[Received]:
    return [
        m
        for m in sub.messages
        if m.topic.endswith(f"/event/{type_}") and m.json()["data"]["code"] == code
    ]


def _final(sock: socket.socket) -> SipResponse:
    while True:
        reply = parse_datagram(sock.recv(65536))
        assert isinstance(reply, SipResponse)
        if reply.status_code >= 200:  # a final response
            return reply


def _invite(sock: socket.socket, target: tuple[str, int], call_id: str) -> tuple[str, list[int]]:
    """INVITE with two streams and no media; the answer's To tag and RTP ports."""
    body, ctype = _siprec_body()
    sock.sendto(_request("INVITE", body=body, content_type=ctype, call_id=call_id), target)
    answer = _final(sock)
    assert answer.status_code == 200
    to_tag = answer.to_addr.tag or ""
    sock.sendto(_request("ACK", to_tag=to_tag, call_id=call_id), target)
    ports = [int(p) for p in _M_LINE.findall(answer.body.decode())]
    assert len(ports) == 2, answer.body
    return to_tag, ports


async def _send_rtp(port: int, stop: asyncio.Event) -> None:
    """µ-law silence every 20 ms, consecutive sequence numbers (no loss), until `stop`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
        seq = 0
        while not stop.is_set():
            rtp.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5EED) + b"\xff" * 160,
                       ("127.0.0.1", port))  # fmt: skip
            seq += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RTP_INTERVAL_S):
                    await stop.wait()


def _file_calls(config: Config, *, lost: int, count: int) -> None:
    """File calls as this node's SIPREC captures would be, through a second index connection."""
    archive = Archive.open(config, migrate=False)
    try:
        for _ in range(count):
            file_synthetic_call(
                archive,
                line="+442071230001",
                counterparty="+447700900123",
                started_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
                source_path="siprec",
                quality={"expected": 1000, "received": 1000 - lost, "lost": lost},
            )
    finally:
        archive.close()


def _readyz(config: Config) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"http://{config.node.status_listen}/readyz").json()
    return body


async def test_no_audio_and_capture_loss_alarms_are_raised_cleared_and_published(
    tmp_path: Path,
) -> None:
    broker = Mosquitto()
    broker.start()
    config_path, config = _config(tmp_path, broker.port)
    recorder = RecorderProcess(config_path, tmp_path / "recorder.log")
    try:
        async with Collector(broker.port) as sub:
            recorder.start()
            await sub.wait_for(lambda _: any(m.payload == b"online" for m in sub.on("status")))
            raised = await _silent_call_then_audio(sub, config)
            # the SIPREC call is filed (its clean RTP is in the loss window from now on)
            await sub.wait_for(lambda _: bool(sub.on("recording.stored")))
            await _lossy_then_clean_calls(sub, config)
            assert _alarms(sub, "alarm.raised", "capture.no_audio") == [raised]  # never re-raised
    finally:
        recorder.stop()
        broker.cleanup()


async def _silent_call_then_audio(sub: Collector, config: Config) -> Received:
    """A SIPREC call without RTP raises `capture.no_audio`; RTP clears it. Returns the raise."""
    target = ("127.0.0.1", int(config.siprec.listen[0].rsplit(":", 1)[1]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        to_tag, ports = await asyncio.to_thread(_invite, sock, target, "no-audio-1")

        # signalling but no RTP: raised after no_audio_seconds
        await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.raised", "capture.no_audio")))
        [raised] = _alarms(sub, "alarm.raised", "capture.no_audio")
        validate_event(raised.topic, raised.json())
        assert raised.topic == "tapeline/v1/test-node/event/alarm.raised"
        assert not raised.retain
        assert raised.json()["data"]["severity"] == "major"
        assert "1 recorded call(s)" in raised.json()["data"]["message"]
        assert "no-audio-1" not in raised.payload.decode()  # no Call-ID leaves the box
        ready = await asyncio.to_thread(_readyz, config)
        assert ready["status"] == "warn"
        assert ready["checks"]["no_audio"][0]["status"] == "warn"
        assert "capture.no_audio" in ready["checks"]["alarms"][0]["output"]
        await sub.wait_for(
            lambda _: any(m.json().get("alarm_no_audio") == 1 for m in sub.on("stats"))
        )

        # audio arrives: cleared while the call is still up
        stop = asyncio.Event()
        sender = asyncio.create_task(_send_rtp(ports[0], stop))
        try:
            await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.cleared", "capture.no_audio")))
            ready = await asyncio.to_thread(_readyz, config)
            assert ready["checks"]["no_audio"][0]["status"] == "pass"
            bye = _request("BYE", to_tag=to_tag, cseq=2, branch="z9hG4bKbye", call_id="no-audio-1")
            sock.sendto(bye, target)
            assert (await asyncio.to_thread(_final, sock)).status_code == 200
        finally:
            stop.set()
            await sender
    [cleared] = _alarms(sub, "alarm.cleared", "capture.no_audio")
    validate_event(cleared.topic, cleared.json())
    assert cleared.json()["seq"] > raised.json()["seq"]
    return raised


async def _lossy_then_clean_calls(sub: Collector, config: Config) -> None:
    """Two calls losing 5 % each raise `capture.loss`; two clean calls clear it."""
    await asyncio.to_thread(_file_calls, config, lost=50, count=2)
    await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.raised", "capture.loss")))
    [loss] = _alarms(sub, "alarm.raised", "capture.loss")
    validate_event(loss.topic, loss.json())
    # 2.50 % if the check ran between the two filings, 5.00 % otherwise: above 1 % either way
    message = loss.json()["data"]["message"]
    assert re.fullmatch(
        r"(2\.50|5\.00)% of packets lost over the last 2 calls \(alarm above 1\.0%\)", message
    )
    await sub.wait_for(
        lambda _: any(m.json().get("alarm_capture_loss") == 1 for m in sub.on("stats"))
    )
    flagged = next(m.json() for m in sub.on("stats") if m.json().get("alarm_capture_loss") == 1)
    assert flagged["capture_loss_percent"] in {2.5, 5.0}
    assert all(isinstance(v, int | float) for v in flagged.values())

    await asyncio.to_thread(_file_calls, config, lost=0, count=2)
    await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.cleared", "capture.loss")))
    [cleared] = _alarms(sub, "alarm.cleared", "capture.loss")
    validate_event(cleared.topic, cleared.json())


async def test_a_scrub_mismatch_is_published_and_a_clean_cycle_clears_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    broker = Mosquitto()
    broker.start()
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker.port}", "stats_interval": 0.5}
    # a cycle short enough that one tick re-hashes every object
    data["integrity"] = {"scrub_interval_days": 0.0001}
    config = parse_config(data, source="test")
    archive = Archive.open(config)
    runtime = Runtime(archive=archive, active_calls={})
    jobs = JobsService(config)
    try:
        await jobs.start(runtime)
        await asyncio.to_thread(_file_calls_into, archive)
        with archive.index.read() as session:
            first = min(o.id for o in session.query(StoredObject))
        path = archive.vault.store.path_of(first)  # type: ignore[attr-defined]  # local store
        original = path.read_bytes()
        flip_a_byte(archive, first, request)
        async with Collector(broker.port) as sub, running_publisher(config, archive):
            report = await asyncio.to_thread(jobs.tick, NOW, 0.0)
            assert report.integrity_problems
            await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.raised", "integrity.object")))
            [raised] = _alarms(sub, "alarm.raised", "integrity.object")
            validate_event(raised.topic, raised.json())
            assert raised.json()["data"]["severity"] == "critical"
            assert first in raised.json()["data"]["message"]
            checks = Health(archive).checks(writes=False)
            assert checks["integrity"][0] == "warn"
            await sub.wait_for(
                lambda _: any(m.json().get("alarm_integrity") == 1 for m in sub.on("stats"))
            )

            path.write_bytes(original)  # restored from a backup
            report = await asyncio.to_thread(jobs.tick, NOW, 10_000.0)  # next scrub is due
            assert report.scrubbed > 0
            assert not report.integrity_problems
            await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.cleared", "integrity.object")))
            [cleared] = _alarms(sub, "alarm.cleared", "integrity.object")
            validate_event(cleared.topic, cleared.json())
            assert Health(archive).checks(writes=False)["integrity"][0] == "pass"
            await sub.wait_for(lambda _: sub.on("stats")[-1].json().get("alarm_integrity") == 0)
    finally:
        archive.close()
        broker.cleanup()


def _file_calls_into(archive: Archive) -> None:
    for i in range(2):
        file_synthetic_call(
            archive,
            line="+442071230001",
            counterparty=f"+4477009001{i:02}",
            started_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        )


async def test_a_two_second_clock_offset_is_published_shown_in_readyz_and_cleared(
    tmp_path: Path,
) -> None:
    broker = Mosquitto()
    broker.start()
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{broker.port}", "stats_interval": 0.5}
    data["alarms"] = {"check_interval_s": 0.2, "clock_offset_max_s": 1.0}
    config = parse_config(data, source="test")
    offsets: list[float | None] = [2.0]

    def reader() -> ClockReading:
        return ClockReading(source="test", offset_s=offsets[-1], detail=f"test: {offsets[-1]}")

    services: list[Service] = [AlarmWatch(config, clock_reader=reader), MqttPublisher(config)]
    recorder = Recorder(config, services=services)
    url = f"http://{config.node.status_listen}/readyz"
    try:
        async with Collector(broker.port) as sub:
            running = asyncio.create_task(recorder.run())
            try:
                await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.raised", "clock.offset")))
                [raised] = _alarms(sub, "alarm.raised", "clock.offset")
                validate_event(raised.topic, raised.json())
                assert raised.json()["data"]["message"].startswith("clock offset +2.000 s exceeds")
                async with httpx.AsyncClient() as client:
                    ready = (await client.get(url)).json()
                    metrics = (await client.get(url.replace("/readyz", "/metrics"))).text
                assert ready["checks"]["clock"][0]["status"] == "warn"
                assert "tapeline_clock_offset_seconds 2.0" in metrics
                assert "tapeline_alarms_active 1.0" in metrics
                await sub.wait_for(
                    lambda _: any(m.json().get("clock_offset_s") == 2.0 for m in sub.on("stats"))
                )

                offsets.append(0.01)
                await sub.wait_for(lambda _: bool(_alarms(sub, "alarm.cleared", "clock.offset")))
                [cleared] = _alarms(sub, "alarm.cleared", "clock.offset")
                validate_event(cleared.topic, cleared.json())
                async with httpx.AsyncClient() as client:
                    ready = (await client.get(url)).json()
                assert ready["checks"]["clock"] == [{"status": "pass", "output": "test: 0.01"}]

                offsets.append(None)  # the source goes away: unknown, no new alarm
                await sub.wait_for(lambda _: "clock_offset_s" not in sub.on("stats")[-1].json())
                async with httpx.AsyncClient() as client:
                    ready = (await client.get(url)).json()
                assert ready["checks"]["clock"][0]["output"].startswith("offset unknown")
                assert len(_alarms(sub, "alarm.raised", "clock.offset")) == 1
            finally:
                recorder.request_stop()
                async with asyncio.timeout(30):
                    await running
    finally:
        broker.cleanup()
