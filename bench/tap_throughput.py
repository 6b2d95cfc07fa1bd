"""Passive tap throughput: `import-pcap` against tshark and tcpdump, live CPU, and the call ladder.

Run from the repository root as root:
`.venv/bin/python bench/tap_throughput.py [CALLS] [SECONDS] [--ladder 100,200,300,500,1000]
[--step-seconds 10] [--only offline,live,ladder]`.

1. Builds a capture with the project's own pcap writer (tests/synthcalls.py): CALLS concurrent
   G.711 calls (INVITE, 200 with SDP, ACK, 20 ms PCMU both ways, BYE) lasting SECONDS each.
2. Offline, on that file: the tracker alone (decode, SIP, routing, media decode) in packets/s;
   `tapeline import-pcap` end to end (filing every call); `tshark -q -z rtp,streams -r` (the
   independent RTP analyser); `tcpdump -r FILE -w /dev/null` (the floor). Ratios are wall time
   against tshark's.
3. Live, in a network namespace this script creates: `tapeline recorder` tapping `lo` and
   `tcpdump -i lo -w /dev/null` capture the same replay (frames injected on `lo` with an AF_PACKET
   socket, paced at the capture's own timestamps); CPU seconds of each process over the replay,
   kernel drops of each, calls filed.
4. Ladder: the largest number of concurrent calls the tap keeps with zero kernel drops on this
   box. On a real SPAN port (tests/integration/tap_support.py `span_link`: a veth link mirrored
   by tc to `spanR`, tapped by a fresh `tapeline recorder` per step), `tcpreplay -i vA` sends a
   capture of N concurrent calls of `--step-seconds` at its own pace, for each N of `--ladder` in
   turn; it stops after the first N with kernel drops. Per step: offered packets/s, recorder CPU
   (% of one core) over the replay, seconds the tap needed after the replay's end to have read
   every frame (its backlog), kernel drops, calls filed. A short step can hide an overload in the
   socket buffer (`[tap] buffer_mb`): CPU near 100 % or a backlog says the tap is not keeping up
   even without drops yet.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import write_config_file
from tests.integration.tap_support import (
    A_ADDR,
    B_ADDR,
    Span,
    in_ns,
    metrics,
    span_link,
    start_recorder,
)
from tests.synthcalls import build_capture

from tapeline.daemon.tap.offline import read_records, track
from tapeline.daemon.tap.tracker import CallTracker


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
            figures = metrics(netns, config)
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


def _ladder_step(span: Span, calls: int, seconds: float, base: Path) -> dict[str, float]:
    """One rung: N calls replayed on the span port to a fresh recorder; its figures."""
    capture = base / f"ladder-{calls}.pcap"
    frames = build_capture(capture, calls, seconds, a_host=A_ADDR, b_host=B_ADDR)
    step = base / f"ladder-{calls}"
    step.mkdir()
    config = write_config_file(step)
    config.write_text(
        config.read_text() + '\n[tap]\ninterfaces = ["spanR"]\nsip_ports = [5060, 5062]\n'
    )
    recorder = start_recorder(span.rec, config, step)
    try:
        seen0 = metrics(span.rec, config)["tapeline_tap_packets_seen"]
        cpu0, started = _cpu(recorder.pid), time.monotonic()
        replay = subprocess.run(
            in_ns(span.a, "tcpreplay", "-i", "vA", str(capture)),
            capture_output=True, text=True, check=True, timeout=seconds + 120,
        )  # fmt: skip
        replay_s = time.monotonic() - started
        cpu1 = _cpu(recorder.pid)
        # Backlog: until every frame is read or counted as dropped, or nothing moves for 3 s.
        last, moved = -1.0, time.monotonic()
        while True:
            figures = metrics(span.rec, config)
            seen = figures["tapeline_tap_packets_seen"] - seen0
            if seen + figures["tapeline_tap_kernel_drops"] >= frames:
                break
            if seen != last:
                last, moved = seen, time.monotonic()
            elif time.monotonic() - moved > 3:
                break
            time.sleep(0.1)
        backlog = time.monotonic() - started - replay_s
        time.sleep(1.5)  # the tap reads the kernel's drop counters once a second
        deadline = time.monotonic() + 60 + 0.2 * calls
        while True:  # the BYE linger, then filing every call
            figures = metrics(span.rec, config)
            if figures["tapeline_tap_calls_filed"] >= calls or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=120)
        capture.unlink()
    rated = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
    return {
        "calls": calls,
        "frames": frames,
        "pps": float(rated[1]) if rated else frames / replay_s,
        "cpu": 100 * (cpu1 - cpu0) / replay_s,
        "backlog": backlog,
        "drops": figures["tapeline_tap_kernel_drops"],
        "filed": figures["tapeline_tap_calls_filed"],
    }


def ladder(counts: list[int], seconds: float, base: Path) -> None:
    """Rungs in turn until the first with kernel drops; prints the table."""
    rows = []
    with span_link(f"tl-bench-{os.getpid()}") as span:
        for calls in counts:
            row = _ladder_step(span, calls, seconds, base)
            rows.append(row)
            print(f"  {calls} calls: {row}", flush=True)
            if row["drops"] > 0:
                break
    print(
        f"ladder: {seconds:.0f} s of N concurrent G.711 calls, tcpreplay on a tc-mirrored veth link"
    )
    print(
        "| calls | packets/s | recorder CPU % (one core) | backlog s | kernel drops | calls filed |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['calls']:.0f} | {row['pps']:,.0f} | {row['cpu']:.0f} | "
              f"{row['backlog']:.1f} | {row['drops']:.0f} | {row['filed']:.0f} / "
              f"{row['calls']:.0f} |")  # fmt: skip
    clean = [row["calls"] for row in rows if row["drops"] == 0]
    print(f"largest call count with zero kernel drops: {max(clean) if clean else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=100)
    parser.add_argument("seconds", nargs="?", type=float, default=20.0)
    parser.add_argument("--ladder", default="100,200,300,500,1000",
                        help="call counts of the ladder, in order")  # fmt: skip
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--only", default="offline,live,ladder",
                        help="which parts to run (comma-separated)")  # fmt: skip
    args = parser.parse_args()
    parts = set(args.only.split(","))
    for tool in ("tshark", "tcpdump", "ip", "tc", "tcpreplay"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is needed")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if parts & {"offline", "live"}:
            capture = base / "calls.pcap"
            packets = build_capture(capture, args.calls, args.seconds)
            assert sum(1 for _ in read_records(capture)) == packets  # noqa: S101
            if "offline" in parts:
                offline(capture, packets, base)
            if "live" in parts:
                live(capture, args.calls, base)
            capture.unlink()
        if "ladder" in parts:
            ladder([int(n) for n in args.ladder.split(",")], args.step_seconds, base)


if __name__ == "__main__":
    main()
