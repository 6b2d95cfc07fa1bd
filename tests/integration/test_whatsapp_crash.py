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
    """`tapeline recorder` in a child process, with systemd's READY=1 as the start signal.

    The notify socket stays open while the child lives: it notifies STOPPING=1 on SIGTERM too.
    """

    def __init__(self, config_path: Path, workdir: Path) -> None:
        self._config = config_path
        self._dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None

    def start(self) -> None:
        path = self._dir / "notify.sock"
        path.unlink(missing_ok=True)
        self._close_notify()
        sock = self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(READY_TIMEOUT_S)
        env = {**os.environ, "PYTHONPATH": str(SRC), "NOTIFY_SOCKET": str(path)}
        argv = ["-c", "from tapeline.cli import main; raise SystemExit(main())", "recorder"]
        with (self._dir / "recorder.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *argv, "-c", str(self._config)], env=env, stdout=log, stderr=log
            )
        while b"READY=1" not in sock.recv(4096):
            pass

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=READY_TIMEOUT_S)

    def stop(self) -> int | None:
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=READY_TIMEOUT_S)
        self._close_notify()
        return code

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None


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
    assert process.stop() == 0
    assert list((config.storage.spool / "whatsapp").glob("*.tpj")) == []
