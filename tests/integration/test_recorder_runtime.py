"""The recorder as systemd runs it: READY after binding, health, metrics, reload, ordered stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeline.config import EX_CONFIG, load_config
from tests.conftest import write_config_file

WAIT_S = 30.0


class NotifySocket:
    """A NOTIFY_SOCKET like systemd's: collects the datagrams a service sends."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="notify-"))
        self.path = str(self.dir / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(WAIT_S)

    def wait_for(self, line: str) -> list[str]:
        seen: list[str] = []
        while line not in seen:
            seen.extend(self.sock.recv(4096).decode().splitlines())
        return seen

    def close(self) -> None:
        self.sock.close()
        Path(self.path).unlink()
        self.dir.rmdir()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    try:
        yield sock
    finally:
        sock.close()


def _start(config: Path, notify: NotifySocket) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback http
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_ready_health_metrics_reload_and_ordered_stop(tmp_path: Path, notify: NotifySocket) -> None:
    config_path = write_config_file(tmp_path)
    config = load_config(config_path, environ={})
    with _start(config_path, notify) as proc:
        output = _exercise(proc, config.node.status_listen, notify)
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logs]
    assert "recorder ready" in messages
    assert "reloaded lines and trunks" in messages
    assert messages[-1] == "recorder stopped"


def _exercise(proc: subprocess.Popen[bytes], status_listen: str, notify: NotifySocket) -> str:
    try:
        notify.wait_for("READY=1")
        base = f"http://{status_listen}"
        # READY came after the status listener was bound: it answers at once
        assert _get(base + "/livez")[0] == 200
        code, ctype, body = _get(base + "/readyz")
        assert code == 200
        assert ctype == "application/health+json"
        health = json.loads(body)
        assert health["status"] == "pass"
        assert set(health["checks"]) >= {"database", "storage", "spool"}
        assert health["storage_mode"] == "audit-trail"
        notify.wait_for("WATCHDOG=1")
        metrics = _get(base + "/metrics")[2]
        assert 'tapeline_build_info{version="' in metrics
        assert "tapeline_mqtt_outbox_messages 0.0" in metrics
        assert _get(base + "/other")[0] == 404
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    return proc.stdout.read().decode()


def test_missing_archive_key_exits_78_and_names_the_key(tmp_path: Path) -> None:
    config_path = write_config_file(tmp_path)
    load_config(config_path, environ={}).storage.key_file.unlink()
    result = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EX_CONFIG
    assert "storage.key_file" in result.stderr


def test_status_port_taken_fails_instead_of_reporting_ready(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config_path = write_config_file(tmp_path)
    host, port = load_config(config_path, environ={}).node.status_address
    with socket.socket() as squatter:
        squatter.bind((host, port))
        squatter.listen()
        with _start(config_path, notify) as proc:
            assert proc.wait(timeout=60) != 0
    notify.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        notify.wait_for("READY=1")
