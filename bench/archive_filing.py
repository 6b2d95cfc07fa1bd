"""Filing cost: the whole filing path vs writing the same FLAC bytes with fsync.

Run from the repository root: `.venv/bin/python bench/archive_filing.py [N]`. Files N synthetic
60-second stereo calls through `Filer.file` (seal, store, read back, manifest, index, audit,
outbox in one transaction, on SQLite) and, as the reference in the same run, writes the same
FLAC bytes to plain files with fsync. Prints calls per second and the ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import config_dict

from tapeline.archive.core import Archive
from tapeline.archive.filing import Filer, NewInteraction, PartyIn, RecordingIn
from tapeline.archive.synthetic import flac_bytes, tone_stereo
from tapeline.config import parse_config

SECONDS = 60.0


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    audio = flac_bytes(tone_stereo(SECONDS))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        started = time.perf_counter()
        for i in range(count):
            path = base / f"plain-{i}.flac"
            with path.open("wb") as handle:
                handle.write(audio)
                handle.flush()
                os.fsync(handle.fileno())
        reference = time.perf_counter() - started
        archive = Archive.open(parse_config(config_dict(base / "a"), source="bench"))
        filer = Filer(archive)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        started = time.perf_counter()
        for i in range(count):
            start = t0 + timedelta(minutes=i)
            filer.file(
                NewInteraction(
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
            )
        filing = time.perf_counter() - started
        archive.close()
    print(f"{count} calls of {SECONDS:.0f} s, FLAC {len(audio) / 1024:.0f} KiB each")
    print(f"plain write+fsync (ref): {count / reference:8.1f} calls/s")
    each_ms = filing / count * 1000
    print(f"Filer.file:              {count / filing:8.1f} calls/s ({each_ms:.1f} ms each)")
    print(f"ratio filing/reference time: {filing / reference:.2f}")


if __name__ == "__main__":
    main()
