"""SIPREC load: N concurrent SIPp calls with two G.711 streams each, against the real recorder.

Run as root from the repository root (SIPp replays RTP with raw sockets):
    .venv/bin/python bench/siprec_load.py 50 100 250
For each N it starts a fresh appliance, runs `tcpdump -w` on loopback for the same traffic as the
reference, places N calls of CALL_S seconds at once, and reports: calls filed, RTP packets lost
(from the filed quality figures), recorder CPU seconds per call-minute, the ratio of the
recorder's CPU to tcpdump's, peak RSS, and the time from the last BYE to the last call filed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import free_port, write_config_file
from tests.integration.test_siprec_sipp import SCENARIO, _ulaw_tone, _write_pcap
from tests.tomlwriter import dumps

from tapeline.archive.core import Archive
from tapeline.archive.records import Filters, search
from tapeline.config import load_config

CALL_S = 10.0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(n: int) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="tapeline-load-"))
    try:
        config_path = write_config_file(base)
        sip_port = free_port(socket.SOCK_DGRAM)
        text = config_path.read_text()
        text = text.replace(
            text[text.index("[siprec]") :].split("\n\n")[0],
            f'[siprec]\nlisten = ["udp:127.0.0.1:{sip_port}"]\nrtp_ports = "30000-39999"',
        )
        text += "\n" + dumps({"trunks": [{"name": "loopback", "match": ["127.0.0.0/8"]}]})
        config_path.write_text(text)
        config = load_config(config_path, environ={})
        _write_pcap(base / "two-streams.pcap", [_ulaw_tone(440, CALL_S), _ulaw_tone(1000, CALL_S)])
        recorder = subprocess.Popen(
            [sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        host, port = config.node.status_listen.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        dump = subprocess.Popen(
            [
                "tcpdump",
                "-i",
                "lo",
                "-w",
                str(base / "ref.pcap"),
                "-q",
                "udp portrange 30000-39999",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        cpu0, dump0 = _cpu_seconds(recorder.pid), _cpu_seconds(dump.pid)
        sipp = subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                str(SCENARIO),
                "-d",
                str(int(CALL_S * 1000)),
                "-m",
                str(n),
                "-l",
                str(n),
                "-r",
                str(n),
                "-rp",
                "1000",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port(socket.SOCK_DGRAM)),
                "-mp",
                str(free_port()),
                "-timeout",
                f"{int(CALL_S * 4)}s",
                "-nostdin",
            ],
            cwd=base,
            capture_output=True,
            text=True,
            check=False,
        )
        bye_done = time.monotonic()
        archive = Archive.open(config, migrate=False)
        filed: list[dict[str, Any]] = []
        while time.monotonic() - bye_done < 120:
            with archive.index.read() as session:
                filed = search(session, Filters(include_hidden=True))
            if len(filed) >= n:
                break
            time.sleep(0.2)
        playable = time.monotonic() - bye_done
        cpu = _cpu_seconds(recorder.pid) - cpu0
        dump_cpu = _cpu_seconds(dump.pid) - dump0
        rss = _rss_kib(recorder.pid)
        dump.terminate()
        recorder.terminate()
        recorder.wait(timeout=60)
        dump.wait(timeout=10)
        archive.close()
        lost = sum(int(s["quality"]["lost"]) for r in filed for s in r["streams"])
        received = sum(int(s["quality"]["received"]) for r in filed for s in r["streams"])
        return {
            "n": n,
            "sipp_ok": float(sipp.returncode == 0),
            "filed": len(filed),
            "received": received,
            "lost": lost,
            "cpu_s_per_call_min": cpu / (n * CALL_S / 60),
            "cpu_ratio_tcpdump": cpu / max(dump_cpu, 0.01),
            "rss_mib": rss / 1024,
            "bye_to_filed_s": playable,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    if shutil.which("tcpdump") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "tcpdump"], check=True)
    sizes = [int(a) for a in sys.argv[1:]] or [50, 100]
    print(
        "| N | filed | RTP received | lost | recorder CPU s / call-min | CPU vs tcpdump "
        "| peak RSS MiB | last BYE to all filed s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        r = run(n)
        print(
            f"| {n} | {r['filed']:.0f} | {r['received']:.0f} | {r['lost']:.0f} | "
            f"{r['cpu_s_per_call_min']:.2f} | {r['cpu_ratio_tcpdump']:.1f} | {r['rss_mib']:.0f} | "
            f"{r['bye_to_filed_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
