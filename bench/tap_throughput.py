"""Passive tap cost: `import-pcap` against tshark and tcpdump, and live capture CPU against tcpdump.

Run from the repository root as root: `.venv/bin/python bench/tap.py [CALLS] [SECONDS]`.

1. Builds a capture with the project's own pcap writer: CALLS concurrent G.711 calls (INVITE,
   200 with SDP, ACK, 20 ms PCMU both ways, BYE) lasting SECONDS each.
2. Offline, on that file: the tracker alone (decode, SIP, routing, media decode) in packets/s;
   `tapeline import-pcap` end to end (filing every call); `tshark -q -z rtp,streams -r` (the
   independent RTP analyser); `tcpdump -r FILE -w /dev/null` (the floor). Ratios are wall time
   against tshark's.
3. Live, in a network namespace this script creates: `tapeline recorder` tapping `lo` and
   `tcpdump -i lo -w /dev/null` capture the same replay (frames injected on `lo` with an AF_PACKET
   socket, paced at the capture's own timestamps); CPU seconds of each process over the replay,
   kernel drops of each, calls filed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import write_config_file

from tapeline.daemon.tap.offline import read_records, track
from tapeline.daemon.tap.tracker import CallTracker
from tapeline.proto.net import PcapWriter, build_udp_frame

NS = 1_000_000_000
PTIME = 0.02
SIP_A, SIP_B = 5060, 5062
HOST = "127.0.0.1"


def _sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _sip(start: str, call: int, cseq: str, *, to_tag: bool, body: str = "") -> bytes:
    branch = f"z9hG4bK{call}{cseq.replace(' ', '')}"
    head = (
        f"{start}\r\nVia: SIP/2.0/UDP {HOST}:{SIP_A};branch={branch}\r\n"
        f"From: <sip:+4420712{call:05d}@a>;tag=a{call}\r\n"
        f"To: <sip:+4477009{call:05d}@b>{f';tag=b{call}' if to_tag else ''}\r\n"
        f"Call-ID: bench-{call}@{HOST}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def build_capture(path: Path, calls: int, seconds: float) -> int:
    """Write the capture; returns its packet count."""
    writer = PcapWriter()
    out = [writer.header(1)]
    t0 = 1_700_000_000.0
    count = 0

    def put(t: float, sport: int, dport: int, payload: bytes) -> None:
        nonlocal count
        frame = build_udp_frame(HOST, HOST, sport, dport, payload)
        out.append(writer.packet(round(t * NS), frame))
        count += 1

    for c in range(calls):
        a_port, b_port = 20000 + 4 * c, 40000 + 4 * c
        t = t0 + c * 0.001
        put(t, SIP_A, SIP_B, _sip("INVITE sip:b SIP/2.0", c, "1 INVITE", to_tag=False,
                                 body=_sdp(a_port)))  # fmt: skip
        put(t + 0.01, SIP_B, SIP_A, _sip("SIP/2.0 200 OK", c, "1 INVITE", to_tag=True,
                                        body=_sdp(b_port)))  # fmt: skip
        put(t + 0.02, SIP_A, SIP_B, _sip("ACK sip:b SIP/2.0", c, "1 ACK", to_tag=True))
    start = t0 + calls * 0.001 + 0.05
    payload = bytes(range(160))
    ticks = int(seconds / PTIME)
    for k in range(ticks):
        t = start + k * PTIME
        for c in range(calls):
            a_port, b_port = 20000 + 4 * c, 40000 + 4 * c
            rtp_a = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, k * 160, 0x10000 + c) + payload
            rtp_b = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, k * 160, 0x20000 + c) + payload
            put(t + c * 1e-5, a_port, b_port, rtp_a)
            put(t + c * 1e-5 + 5e-6, b_port, a_port, rtp_b)
    end = start + ticks * PTIME
    for c in range(calls):
        put(end + c * 0.001, SIP_A, SIP_B, _sip("BYE sip:b SIP/2.0", c, "2 BYE", to_tag=True))
    path.write_bytes(b"".join(out))
    return count


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def offline(capture: Path, packets: int, base: Path) -> None:
    started = time.perf_counter()
    tracker = CallTracker()
    ended: list[object] = []
    track([capture], tracker, ended.append)
    tracker_s = time.perf_counter() - started
    config = write_config_file(base / "offline")
    imp = _wall([sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config),
                 str(capture)])  # fmt: skip
    tshark = _wall(["tshark", "-q", "-z", "rtp,streams", "-r", str(capture)])
    tcpdump = _wall(["tcpdump", "-r", str(capture), "-w", "/dev/null"])
    print(f"offline: {packets} packets, {len(ended)} calls")
    print("| path | wall s | packets/s | wall / tshark |")
    print("| --- | ---: | ---: | ---: |")
    for name, wall in (
        ("tcpdump -r FILE -w /dev/null (floor)", tcpdump),
        ("tshark -q -z rtp,streams (reference)", tshark),
        ("tracker only (decode, SIP, route, media decode)", tracker_s),
        ("tapeline import-pcap (tracker + filing every call)", imp),
    ):
        print(f"| {name} | {wall:.2f} | {packets / wall:,.0f} | {wall / tshark:.2f} |")


def _replay(capture: Path, netns: str) -> None:
    """Inject every frame on the namespace's `lo`, paced by the capture's timestamps."""
    code = f"""
import socket, time, sys
sys.path.insert(0, {str(Path.cwd() / "src")!r})
from tapeline.daemon.tap.offline import read_records
from pathlib import Path
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("lo", 0))
records = list(read_records(Path({str(capture)!r})))
t0 = records[0].ts_ns
start = time.monotonic()
for r in records:
    due = (r.ts_ns - t0) / 1e9
    late = due - (time.monotonic() - start)
    if late > 0.002:
        time.sleep(late)
    s.send(r.data)
"""
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], check=True)


def live(capture: Path, calls: int, base: Path) -> None:
    netns = f"tapeline-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        config = write_config_file(base / "live")
        config.write_text(config.read_text() + '\n[tap]\ninterfaces = ["lo"]\nbuffer_mb = 64\n')
        notify = base / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify))
        with (base / "recorder.log").open("wb") as log:
            recorder = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "tapeline.cli", "recorder",
                 "-c", str(config)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NOTIFY_SOCKET": str(notify)},
            )  # fmt: skip
        while b"READY=1" not in listener.recv(4096):
            pass
        listener.close()
        tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-i", "lo", "-B", "65536", "-w", "/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        before = (_cpu(recorder.pid), _cpu(tcpdump.pid))
        started = time.monotonic()
        _replay(capture, netns)
        deadline = time.monotonic() + 120
        while True:  # the BYE linger, then filing every call
            figures = _metrics(netns, config)
            if figures.get("tapeline_tap_calls_filed", 0) >= calls or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        after = (_cpu(recorder.pid), _cpu(tcpdump.pid))
        span = time.monotonic() - started
        tcpdump.send_signal(signal.SIGINT)
        _, err = tcpdump.communicate(timeout=30)
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    rec_cpu, dump_cpu = after[0] - before[0], after[1] - before[1]
    drops = next((line for line in err.splitlines() if "dropped by kernel" in line), "?")
    print(f"live: {calls} calls replayed over {span:.1f} s")
    print("| process | CPU s | CPU % of one core | kernel drops | calls filed |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| tcpdump -i lo -w /dev/null (reference) | {dump_cpu:.2f} | "
          f"{100 * dump_cpu / span:.1f} | {drops.split()[0]} | - |")  # fmt: skip
    print(f"| tapeline recorder, tap on lo | {rec_cpu:.2f} | {100 * rec_cpu / span:.1f} | "
          f"{figures.get('tapeline_tap_kernel_drops', -1):.0f} | "
          f"{figures.get('tapeline_tap_calls_filed', -1):.0f} |")  # fmt: skip
    print(f"CPU ratio tap/tcpdump: {rec_cpu / max(dump_cpu, 0.01):.1f}")
    print(f"tap figures: {figures}")


def _metrics(netns: str, config: Path) -> dict[str, float]:
    from tapeline.config import load_config  # noqa: PLC0415

    address = load_config(config, environ={}).node.status_listen
    code = (
        f"import urllib.request;print(urllib.request.urlopen('http://{address}/metrics')"
        ".read().decode())"
    )
    text = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("tapeline_tap_")
    }


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    for tool in ("tshark", "tcpdump", "ip"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        capture = base / "calls.pcap"
        packets = build_capture(capture, calls, seconds)
        assert sum(1 for _ in read_records(capture)) == packets  # noqa: S101
        offline(capture, packets, base)
        live(capture, calls, base)


if __name__ == "__main__":
    main()
