"""Webhook ingest: signed deliveries per second journaled durably (fsync) and filed, p99 of the 200.

Run from the repository root:
`PYTHONPATH=src python bench/webhook_ingest.py [SECONDS] [CONCURRENCY]`.
Starts `tapeline recorder` as a child process on a scratch appliance (SQLite, local objects),
waits for READY=1, then a load generator on loopback posts distinct signed text messages for
SECONDS with CONCURRENCY connections. Prints the acknowledged rate and latency percentiles, the
rate at which the same deliveries were filed (from the first post to the last record in the
index), and the ratio against the listener's HTTP floor measured in the same invocation (a
refused verification GET: same server, no signature, journal or index).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tapeline.archive.crypto import generate_archive_key, generate_signing_key
from tapeline.daemon.whatsapp.signature import sign

SECRET = b"bench-app-secret"
PHONE_ID = "1122334455667"
HTTP_OK = 200
HTTP_FORBIDDEN = 403


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(base: Path) -> tuple[Path, str, Path]:
    generate_archive_key(base / "archive.key")
    generate_signing_key(base / "signing.key")
    (base / "app_secret").write_bytes(SECRET)
    listen = f"127.0.0.1:{_port()}"
    db = base / "index" / "tapeline.db"
    text = f"""
[node]
id = "bench"
status_listen = "127.0.0.1:{_port()}"
signing_key_file = "{base / "signing.key"}"
[storage]
path = "{base / "objects"}"
spool = "{base / "spool"}"
key_file = "{base / "archive.key"}"
min_free_bytes = 0
[database]
url = "sqlite:///{db}"
[siprec]
listen = []
[whatsapp]
listen = "{listen}"
app_secret_file = "{base / "app_secret"}"
[[lines]]
number = "+442071230001"
owner = "Bench Line"
whatsapp_phone_number_id = "{PHONE_ID}"
"""
    path = base / "tapeline.toml"
    path.write_text(text)
    return path, listen, db


def _start(config: Path, base: Path) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """The recorder, and its notify socket (kept open: the recorder notifies until it exits)."""
    notify = base / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    argv = ["-c", "from tapeline.cli import main; raise SystemExit(main())", "recorder"]
    with (base / "recorder.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv, "-c", str(config)], env=env, stdout=log, stderr=log
        )
    while b"READY=1" not in sock.recv(4096):
        pass
    return proc, sock


def _body(n: int) -> bytes:
    message = {
        "from": "447700900123",
        "id": f"wamid.bench.{n}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": f"bench message {n}"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "442071230001", "phone_number_id": PHONE_ID},
        "contacts": [{"profile": {"name": "Bench"}, "wa_id": "447700900123"}],
        "messages": [message],
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(doc).encode()


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> int:
    """One HTTP/1.1 exchange on a kept-alive connection; returns the status code."""
    writer.write(head + body)
    await writer.drain()
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    length = 0
    for line in header.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _load(
    listen: str, seconds: float, concurrency: int, *, signed: bool
) -> tuple[int, list[float]]:
    """A lean load generator (raw keep-alive HTTP/1.1), so the client is not the bottleneck."""
    host, port = listen.rsplit(":", 1)
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                n = next(counter)
                if signed:
                    body = _body(n)
                    head = (
                        f"POST /webhooks/whatsapp HTTP/1.1\r\nHost: {listen}\r\n"
                        "Content-Type: application/json\r\n"
                        f"X-Hub-Signature-256: {sign(body, SECRET)}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode()
                    expected = HTTP_OK
                else:
                    body = b""
                    head = (
                        f"GET /webhooks/whatsapp?hub.mode=x HTTP/1.1\r\nHost: {listen}\r\n\r\n"
                    ).encode()
                    expected = HTTP_FORBIDDEN
                started = time.perf_counter()
                status = await _request(reader, writer, head, body)
                latencies.append(time.perf_counter() - started)
                if status != expected:
                    raise RuntimeError(f"answered {status}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies


def _filed(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from messages").fetchone()[0])


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    with tempfile.TemporaryDirectory(prefix="tapeline-bench-") as tmp:
        base = Path(tmp)
        config, listen, db = _config(base)
        proc, notify = _start(config, base)
        try:
            floor_n, _ = asyncio.run(_load(listen, min(seconds, 5.0), concurrency, signed=False))
            floor_rate = floor_n / min(seconds, 5.0)
            started = time.perf_counter()
            acked, latencies = asyncio.run(_load(listen, seconds, concurrency, signed=True))
            ack_elapsed = time.perf_counter() - started
            while _filed(db) < acked:
                time.sleep(0.2)
            filed_elapsed = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            notify.close()
            errors = [
                ln for ln in (base / "recorder.log").read_text().splitlines() if '"error"' in ln
            ]
            print("\n".join(errors[:5]))
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"deliveries acknowledged     {acked:8d} in {ack_elapsed:6.1f} s")
    print(
        f"acknowledged (journaled)    {acked / ack_elapsed:8.0f} /s   ({concurrency} connections)"
    )
    print(f"200 latency p50 / p99       {p50:8.1f} / {p99:.1f} ms")
    print(
        f"filed (index + objects)     {acked / filed_elapsed:8.0f} /s"
        f"   (all {acked} filed after {filed_elapsed:.1f} s)"
    )
    print(f"HTTP floor (refused GET)    {floor_rate:8.0f} /s")
    print(f"ack rate / HTTP floor       {acked / ack_elapsed / floor_rate:8.2f}")


if __name__ == "__main__":
    main()
