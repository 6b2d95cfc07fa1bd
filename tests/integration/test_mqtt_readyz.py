"""The recorder's `/readyz` says `warn`, not `fail`, while the broker is away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tapeline.config import parse_config
from tapeline.daemon.recorder import Recorder
from tapeline.daemon.services import build_services
from tapeline.events.publisher import MqttPublisher
from tests.conftest import config_dict, free_port
from tests.integration.mqtt_support import Mosquitto


async def test_readyz_warns_while_the_broker_is_away_and_passes_once_it_is_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = config_dict(tmp_path)
    data["mqtt"] = {"url": f"mqtt://127.0.0.1:{port}", "reconnect_max_delay": 1.0}
    config = parse_config(data, source="test")
    services = build_services(config)
    publisher = next(s for s in services if s.name == "mqtt")
    assert isinstance(publisher, MqttPublisher)
    recorder = Recorder(config, services=services)
    running = asyncio.create_task(recorder.run())
    broker = Mosquitto(port=port)
    url = f"http://{config.node.status_listen}/readyz"
    try:
        async with asyncio.timeout(20):
            await recorder.ready.wait()  # READY does not wait for the broker
        async with httpx.AsyncClient() as client:
            away = await client.get(url)
            assert away.status_code == 200
            assert away.json()["status"] == "warn"
            assert away.json()["checks"]["mqtt"][0]["status"] == "warn"

            await asyncio.to_thread(broker.start)
            async with asyncio.timeout(20):
                await publisher.wait_until(connected=True)
            back = await client.get(url)
            assert back.json()["checks"]["mqtt"][0]["status"] == "pass"
    finally:
        recorder.request_stop()
        async with asyncio.timeout(30):
            await running
        broker.cleanup()
