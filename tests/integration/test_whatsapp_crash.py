"""`kill -9` of the recorder right after its 200: after a restart the delivery is filed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tapeline.archive.core import Archive
from tapeline.archive.records import Filters, search
from tapeline.config import Config
from tapeline.daemon.whatsapp.signature import sign
from tests.integration.whatsapp_support import (
    SECRET,
    body_of,
    envelope,
    whatsapp_config,
    write_toml,
)

SRC = Path(__file__).resolve().parents[2] / "src"
READY_TIMEOUT_S = 60.0
MESSAGES = 300


class RecorderProcess:
    """`tapeline recorder` in a child process, with systemd's READY=1 as the start signal."""

    def __init__(self, config_path: Path, workdir: Path) -> None:
        self._config = config_path
        self._dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        notify = self._dir / f"notify-{os.getpid()}-{id(self)}.sock"
        notify.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(notify))
            sock.settimeout(READY_TIMEOUT_S)
            env = {**os.environ, "PYTHONPATH": str(SRC), "NOTIFY_SOCKET": str(notify)}
            log = (self._dir / "recorder.log").open("ab")
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from tapeline.cli import main; raise SystemExit(main())",
                    "recorder",
                    "-c",
                    str(self._config),
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
            log.close()
            while True:
                message = sock.recv(4096).decode()
                if "READY=1" in message:
                    return

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=READY_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=READY_TIMEOUT_S)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[RecorderProcess, Config]]:
    config = whatsapp_config(tmp_path, graph_url="http://127.0.0.1:9/v21.0")
    path = tmp_path / "tapeline.toml"
    write_toml(config, path)
    process = RecorderProcess(path, tmp_path)
    try:
        yield process, config
    finally:
        process.stop()


def filed_wamids(config: Config) -> set[str]:
    archive = Archive.open(config, migrate=False)
    try:
        with archive.index.read() as session:
            records = search(session, Filters(include_hidden=True))
        return {r["message"]["wamid"] for r in records if r["message"]}
    finally:
        archive.close()


@pytest.mark.slow
def test_kill_9_after_the_200_loses_nothing(recorder: tuple[RecorderProcess, Config]) -> None:
    process, config = recorder
    process.start()
    messages = [
        {
            "from": "972987654321",
            "id": f"wamid.crash.{i}",
            "timestamp": "1697043223",
            "type": "text",
            "text": {"body": f"crash {i}"},
        }
        for i in range(MESSAGES)
    ]
    body = body_of(envelope({"messages": messages}))
    url = f"http://{config.whatsapp.listen}/webhooks/whatsapp"
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, SECRET)}
    response = httpx.post(url, content=body, headers=headers, timeout=READY_TIMEOUT_S)
    assert response.status_code == 200
    process.kill()
    before = filed_wamids(config)
    assert len(before) < MESSAGES  # the kill really came before filing finished
    process.start()  # READY=1 comes after recovery
    expected = {f"wamid.crash.{i}" for i in range(MESSAGES)}
    assert filed_wamids(config) == expected
    process.stop()
    assert list((config.storage.spool / "whatsapp").glob("*.tpj")) == []
