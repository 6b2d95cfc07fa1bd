"""`tapeline demo` as a newcomer runs it: one command, a printed password, a working HTTPS page."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tapeline.archive import totp
from tests.conftest import free_port

WAIT_S = 60.0


def _wait_for_line(proc: subprocess.Popen[str], marker: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = proc.stdout.readline()
        assert line, f"demo exited early: {''.join(lines)}"
        lines.append(line)
    return lines


def _wait_listening(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S):
        pass


def _run_demo(data: Path, web: int, status: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tapeline.cli",
            "demo",
            "--data-dir",
            str(data),
            "--web-port",
            str(web),
            "--status-port",
            str(status),
            "--sip-port",
            str(free_port(socket.SOCK_DGRAM)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _enrol_totp(client: httpx.Client) -> None:
    page = client.get("/login/totp").text
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert secret is not None
    assert csrf is not None
    key = base64.b32decode(secret.group(1) + "=" * (-len(secret.group(1)) % 8))
    code = totp.totp(key, time.time())
    done = client.post("/login/totp", data={"csrf": csrf.group(1), "code": code})
    assert done.headers["location"] == "/"


def test_demo_prints_a_fresh_password_once_and_serves_the_page(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    web, status = free_port(), free_port()
    with _run_demo(data, web, status) as proc:
        try:
            lines = _wait_for_line(proc, "Stop with Ctrl-C.")
            account = next(line for line in lines if "account:" in line)
            match = re.search(r"officer / (\S+)", account)
            assert match, account
            password = match.group(1)
            assert len(password) >= 16
            _wait_listening(web)
            cert = data / "tls" / "web.crt"
            with httpx.Client(
                base_url=f"https://127.0.0.1:{web}",
                verify=ssl.create_default_context(cafile=str(cert)),
            ) as client:
                assert client.get("/").status_code == 303
                login = client.post("/login", data={"username": "officer", "password": password})
                assert login.status_code == 303
                # Every role includes admin, so the first sign-in enrols a second factor.
                assert login.headers["location"] == "/login/totp"
                _enrol_totp(client)
                page = client.get("/")
                assert "Alice Trader" in page.text
                assert page.text.count("/records/") == 3
            ready = httpx.get(f"http://127.0.0.1:{status}/readyz").json()
            assert ready["status"] == "pass"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    # A second start keeps the account and its password: nothing is printed again.
    with _run_demo(data, free_port(), free_port()) as again:
        try:
            lines = _wait_for_line(again, "Stop with Ctrl-C.")
            assert password not in "".join(lines)
            assert any("password was shown when the demo first ran" in line for line in lines)
            again.send_signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0
        finally:
            if again.poll() is None:
                again.kill()
    assert (data / "keys" / "archive.key").stat().st_mode & 0o777 == 0o600
