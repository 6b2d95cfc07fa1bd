"""Filing to a local disk vs to an S3 Object Lock bucket (Ceph RGW), in the same run.

Run from the repository root as root (it starts Ceph daemons):
`PYTHONPATH=src .venv/bin/python bench/filing_s3.py [N]`. Starts the test suite's single-node
Ceph RGW (memory-backed OSD, loopback, no auth), then files N synthetic 60-second stereo calls
through `Filer.file` on each backend, SQLite index for both. On S3 a call counts as filed only
after every object's COMPLIANCE retention read back, so each call's time is its time to preserved.
Prints calls per second and per-call latency (median, 95th percentile), after one untimed call
per backend (RGW creates its data pool on the first write, about 2 s).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import CephRgw, config_dict

from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, NewInteraction, PartyIn, RecordingIn
from tapeline.archive.synthetic import flac_bytes, tone_stereo
from tapeline.config import parse_config

SECONDS = 60.0


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
    finally:
        rgw.stop()
    print(f"{count} calls of {SECONDS:.0f} s, FLAC {len(audio) / 1024:.0f} KiB each")
    print(f"Ceph RGW started in {rgw.start_seconds:.1f} s; S3 storage mode {mode}")
    print("| store | calls/s | ms per call, median | ms per call, p95 |")
    print("| --- | ---: | ---: | ---: |")
    print(_row("local disk (`audit-trail`)", count, local_total, local_each))
    print(_row("Ceph RGW, Object Lock COMPLIANCE", count, s3_total, s3_each))
    print(f"ratio S3/local time: {s3_total / local_total:.2f}")


if __name__ == "__main__":
    main()
