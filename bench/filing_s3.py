"""Filing to a local disk vs to an S3 Object Lock bucket (Ceph RGW), in the same run.

Run from the repository root as root (it starts Ceph daemons):
`PYTHONPATH=src .venv/bin/python bench/filing_s3.py [N]`. Starts the test suite's single-node
Ceph RGW (memory-backed OSD, loopback, no auth), then files N synthetic 60-second stereo calls
through `Filer.file` on each backend, SQLite index for both. On S3 a call counts as filed only
after every object's COMPLIANCE retention read back, so each call's time is its time to preserved.
Prints calls per second and per-call latency (median, 95th percentile), after one untimed call
per backend (RGW creates its data pool on the first write, about 2 s).

Then, on each backend, a real `tapeline recorder` takes SIPREC_CALLS calls from SIPp (two G.711
streams each) and the time from BYE to preserved is read from the index per call: the record's
`ended_at` (the recorder's BYE time) to its `record.filed` audit entry, which is written in the
filing transaction after every object is stored, read back and (on S3) its COMPLIANCE retention
confirmed by GetObjectRetention. The recorder renders FLAC from its journal in that interval too.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from tests.conftest import CephRgw, config_dict, free_port
from tests.integration.test_siprec_sipp import SCENARIO, _start_recorder, _ulaw_tone, _write_pcap
from tests.tomlwriter import dumps

from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, NewInteraction, PartyIn, RecordingIn
from tapeline.archive.models import AuditEntry, Interaction
from tapeline.archive.synthetic import flac_bytes, tone_stereo
from tapeline.config import load_config, parse_config
from tapeline.tlscert import generate_self_signed

SECONDS = 60.0
SIPREC_CALLS = 20
SIPREC_CALL_S = 2.0


def _call(i: int, audio: bytes) -> NewInteraction:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return NewInteraction(
        channel="voice",
        kind="call",
        direction="inbound",
        started_at=start,
        ended_at=start + timedelta(seconds=SECONDS),
        source_path="bench",
        line_number="+442071230001",
        counterparty="+447700900123",
        participants=[PartyIn(role="employee", identifier="+442071230001")],
        recording=RecordingIn(
            data=audio,
            format="flac",
            sample_rate=8000,
            channels=2,
            duration_ms=int(SECONDS * 1000),
        ),
    )


def _run(archive: Archive, count: int, audio: bytes) -> tuple[float, list[float]]:
    filer = Filer(archive)
    filer.file(_call(count, audio))  # warm-up, untimed: RGW creates its data pool on first write
    each: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        filer.file(_call(i, audio))
        each.append(time.perf_counter() - t)
    return time.perf_counter() - started, each


def _row(name: str, count: int, total: float, each: list[float]) -> str:
    p50 = statistics.median(each) * 1000
    p95 = statistics.quantiles(each, n=20)[-1] * 1000
    return f"| {name} | {count / total:.1f} | {p50:.1f} | {p95:.1f} |"


def _siprec(base: Path, storage: dict[str, str] | None) -> list[float]:
    """BYE-to-preserved seconds of each of SIPREC_CALLS calls placed by SIPp at a recorder."""
    base.mkdir(parents=True, exist_ok=True)
    data = config_dict(base)
    if storage is not None:
        data["storage"].update(storage)
    sip_port = free_port(socket.SOCK_DGRAM)
    data["siprec"] = {"listen": [f"udp:127.0.0.1:{sip_port}"], "rtp_ports": "34000-35999"}
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    config_path = base / "tapeline.toml"
    config_path.write_text(dumps(data))
    tone = _ulaw_tone(440, SIPREC_CALL_S)
    _write_pcap(base / "two-streams.pcap", [tone, tone])
    recorder = _start_recorder(config_path)
    try:
        subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                str(SCENARIO),
                "-d",
                str(int(SIPREC_CALL_S * 1000)),
                "-m",
                str(SIPREC_CALLS),
                "-l",
                str(SIPREC_CALLS),
                "-r",
                "5",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port(socket.SOCK_DGRAM)),
                "-mp",
                str(free_port()),
                "-timeout",
                "120s",
                "-nostdin",
            ],
            cwd=base,
            capture_output=True,
            check=True,
            timeout=300,
        )
        archive = Archive.open(load_config(config_path, environ={}), migrate=False)
        try:
            deadline = time.monotonic() + 120
            rows: list[tuple[datetime, datetime]] = []
            while time.monotonic() < deadline and len(rows) < SIPREC_CALLS:
                time.sleep(0.5)
                with archive.index.read() as session:
                    rows = [
                        (ended, filed)
                        for ended, filed in session.execute(
                            select(Interaction.ended_at, AuditEntry.ts)
                            .join(AuditEntry, AuditEntry.object_id == Interaction.id)
                            .where(AuditEntry.action == "record.filed")
                        ).all()
                        if ended is not None
                    ]
        finally:
            archive.close()
    finally:
        recorder.terminate()
        recorder.wait(timeout=60)
    return [(filed - ended).total_seconds() for ended, filed in rows]


def _bye_row(name: str, delays: list[float]) -> str:
    p95 = statistics.quantiles(delays, n=20)[-1] if len(delays) > 1 else delays[0]
    return (
        f"| {name} | {len(delays)} of {SIPREC_CALLS} | {statistics.median(delays) * 1000:.0f} "
        f"| {p95 * 1000:.0f} | {max(delays) * 1000:.0f} |"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    audio = flac_bytes(tone_stereo(SECONDS))
    rgw = CephRgw()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            local = Archive.open(parse_config(config_dict(base / "local"), source="bench"))
            local_total, local_each = _run(local, count, audio)
            local.close()
            data = config_dict(base / "s3")
            data["storage"].update(rgw.storage_keys(base / "s3", rgw.new_bucket()))
            s3 = Archive.open(parse_config(data, source="bench"))
            s3_total, s3_each = _run(s3, count, audio)
            mode = s3.storage_mode
            s3.close()
            local_bye = _siprec(base / "sip-local", None)
            s3_bye = _siprec(base / "sip-s3", rgw.storage_keys(base / "sip-s3", rgw.new_bucket()))
    finally:
        rgw.stop()
    print(f"{count} calls of {SECONDS:.0f} s, FLAC {len(audio) / 1024:.0f} KiB each")
    print(f"Ceph RGW started in {rgw.start_seconds:.1f} s; S3 storage mode {mode}")
    print("| store | calls/s | ms per call, median | ms per call, p95 |")
    print("| --- | ---: | ---: | ---: |")
    print(_row("local disk (`audit-trail`)", count, local_total, local_each))
    print(_row("Ceph RGW, Object Lock COMPLIANCE", count, s3_total, s3_each))
    print(f"ratio S3/local time: {s3_total / local_total:.2f}")
    print()
    print(f"SIPREC: {SIPREC_CALLS} calls of {SIPREC_CALL_S:.0f} s from SIPp, BYE to preserved")
    print("| store | filed | ms median | ms p95 | ms max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(_bye_row("local disk (`audit-trail`)", local_bye))
    print(_bye_row("Ceph RGW, Object Lock COMPLIANCE", s3_bye))


if __name__ == "__main__":
    main()
