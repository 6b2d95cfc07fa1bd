"""The live tap on a real SPAN (mirror) port: what it files equals what `import-pcap` files.

Three network namespaces this test creates: `a` (SIPp caller, tcpreplay) and `b` (SIPp callee)
are joined by a veth pair `vA`/`vB`; tc mirrors every frame `vA` receives (ingress) and sends
(egress) to a second veth `spanA`, whose peer `spanR` sits in namespace `rec`, where the recorder
taps it (`tap_support.span_link`). `rec` holds nothing else, so `spanR` shows exactly what a
switch's SPAN port shows: both directions of the link, never the recorder's own traffic.

The independent reference is the capture itself: `tcpdump -i spanR` written alongside the
recorder (counted per SSRC by `tshark`, and filed by `tapeline import-pcap`), or the file that
`tcpreplay` sends (filed by `import-pcap`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeline.config import TapConfig
from tapeline.daemon.tap.bpf import widened
from tapeline.daemon.tap.offline import read_records
from tapeline.proto.net import PcapWriter, build_udp_frame
from tests.conftest import CORPUS, require_tool, write_config_file
from tests.integration.tap_support import (
    A_ADDR,
    B_ADDR,
    Span,
    Summary,
    all_records,
    import_pcap,
    in_ns,
    metrics,
    span_link,
    start_recorder,
    summary,
    wait_filed,
)
from tests.synthcalls import build_capture, call_id, packets_per_stream

pytestmark = pytest.mark.slow
SIPP_DIR = Path(__file__).with_name("sipp")
PACKET_SAMPLES = 160
TONE_PACKETS = 100  # 2 s of 20 ms packets each way
CALLS = 3  # concurrent SIPp calls per transport
UAS_SIP, UAC_SIP, UAS_MEDIA, UAC_MEDIA = 5070, 5080, 16000, 18000


@pytest.fixture
def span() -> Iterator[Span]:
    """Three fresh namespaces wired as a link with a SPAN port; all removed afterwards."""
    require_tool("ip")
    require_tool("tc")
    with span_link(f"tl-span-{os.getpid()}") as names:
        yield names


def _recorder_config(base: Path, sip_ports: list[int]) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    config_path = write_config_file(base)
    config_path.write_text(
        config_path.read_text() + f'\n[tap]\ninterfaces = ["spanR"]\nsip_ports = {sip_ports}\n'
    )
    return config_path


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_tcpdump(span: Span, path: Path) -> subprocess.Popen[bytes]:
    """`tcpdump -i spanR -w path` in `rec`, returned once it says it is listening."""
    tcpdump = require_tool("tcpdump")
    err = path.with_suffix(".err")
    with err.open("wb") as log:
        proc = subprocess.Popen(
            in_ns(span.rec, tcpdump, "-i", "spanR", "-U", "-Z", "root", "-w", str(path)),
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    deadline = time.monotonic() + 15
    while b"listening on" not in err.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"tcpdump did not start: {err.read_text()}")
        time.sleep(0.05)
    return proc


def _write_rtp_pcap(path: Path, ssrc: int) -> None:
    """`TONE_PACKETS` 20 ms PCMA packets for SIPp's play_pcap_audio (it sends the UDP payloads)."""
    writer = PcapWriter()
    out = [writer.header(1)]
    t0 = 1_700_000_000 * 10**9
    for index in range(TONE_PACKETS):
        chunk = bytes((index + n) & 0xFF for n in range(PACKET_SAMPLES))
        rtp = struct.pack("!BBHII", 0x80, 8, index, index * PACKET_SAMPLES, ssrc) + chunk
        frame = build_udp_frame("10.0.0.1", "10.0.0.2", 4000, 4002, rtp)
        out.append(writer.packet(t0 + index * 20_000_000, frame))
    path.write_bytes(b"".join(out))


def _tshark_rtp_streams(capture: Path) -> dict[int, int]:
    """SSRC -> packets, as tshark's RTP stream analysis counts them in `capture`."""
    out = subprocess.run(
        [require_tool("tshark"), "-n", "-r", str(capture), "-o", "rtp.heuristic_rtp:TRUE", "-q",
         "-z", "rtp,streams"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    streams: dict[int, int] = {}
    for match in re.finditer(r"\b0x([0-9A-Fa-f]{8})\s+\S.*?\s+(\d+)\s+-?\d+\s+\(", out):
        ssrc = int(match[1], 16)
        streams[ssrc] = streams.get(ssrc, 0) + int(match[2])
    return streams


def _place_calls(
    span: Span, tmp_path: Path, transport: str, call_ids: list[str]
) -> list[subprocess.Popen[bytes]]:
    """Concurrent SIPp calls from `a` to `b`, each with its own ports and SSRCs; all processes."""
    procs: list[subprocess.Popen[bytes]] = []
    uacs = []
    for k in range(len(call_ids)):
        workdir = tmp_path / f"call{k}"
        workdir.mkdir()
        for name in ("tap_uac.xml", "tap_uas.xml"):
            shutil.copy(SIPP_DIR / name, workdir / name)
        _write_rtp_pcap(workdir / "uac.pcap", 0x1110 + k)
        _write_rtp_pcap(workdir / "uas.pcap", 0x2220 + k)
        procs.append(subprocess.Popen(
            in_ns(span.b, "sipp", "-sf", "tap_uas.xml", "-i", B_ADDR, "-p", str(UAS_SIP + k),
                  "-mp", str(UAS_MEDIA + 10 * k), "-m", "1", "-nostdin", "-timeout", "30s",
                  "-timeout_error", "-t", transport),
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    time.sleep(0.5)  # sipp has no readiness signal; the UAC retransmits the INVITE anyway
    for k, cid in enumerate(call_ids):
        uac = subprocess.Popen(
            in_ns(span.a, "sipp", f"{B_ADDR}:{UAS_SIP + k}", "-sf", "tap_uac.xml", "-i", A_ADDR,
                  "-p", str(UAC_SIP + k), "-mp", str(UAC_MEDIA + 10 * k), "-m", "1", "-d", "2700",
                  "-cid_str", cid, "-nostdin", "-timeout", "30s", "-timeout_error", "-t",
                  transport),
            cwd=tmp_path / f"call{k}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(uac)
        uacs.append(uac)
    for uac in uacs:
        assert uac.wait(timeout=60) == 0  # the caller got its 200 to INVITE and to BYE
    return procs


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["sip-udp", "sip-tcp"])
def test_sipp_calls_across_the_mirrored_link_are_filed_as_the_span_capture_shows(
    span: Span, tmp_path: Path, transport: str
) -> None:
    if shutil.which("sipp") is None:
        pytest.fail("sipp (Debian sip-tester) is not installed: make test installs it")
    sip_ports = sorted({UAS_SIP + k for k in range(CALLS)} | {UAC_SIP + k for k in range(CALLS)})
    config_path = _recorder_config(tmp_path / "live", sip_ports)
    call_ids = [f"tl-span-{os.getpid()}-{transport}-{k}@{A_ADDR}" for k in range(CALLS)]
    recorder = start_recorder(span.rec, config_path, tmp_path / "live")
    sipp: list[subprocess.Popen[bytes]] = []
    try:
        tcpdump = _start_tcpdump(span, tmp_path / "span.pcap")
        try:
            sipp = _place_calls(span, tmp_path, transport, call_ids)
            live = {cid: wait_filed(config_path, cid) for cid in call_ids}
            figures = metrics(span.rec, config_path)
        finally:
            _stop(tcpdump, signal.SIGINT)
    finally:
        for proc in sipp:  # the callees end by themselves; over TCP one may exit 1 (timewait)
            _stop(proc)
        _stop(recorder)
    assert figures["tapeline_tap_kernel_drops"] == 0
    # Independent count: tshark's RTP analysis of what tcpdump saw on the same span port.
    tshark = _tshark_rtp_streams(tmp_path / "span.pcap")
    for k, cid in enumerate(call_ids):
        record = live[cid]
        assert record["kind"] == "call", record
        assert record["source"]["path"] == "tap"
        assert record["line"]["number"] == "+442071230001"
        by_ssrc = {s["ssrc"]: s for s in record["streams"]}
        assert set(by_ssrc) == {0x1110 + k, 0x2220 + k}, record["streams"]  # both directions
        assert sorted(s["channel"] for s in record["streams"]) == [0, 1]
        for ssrc, stream in by_ssrc.items():
            assert stream["quality"]["rtp_packets"] == tshark[ssrc] == TONE_PACKETS, stream
    # What import-pcap files from the span capture is what the recorder filed live.
    offline = _recorder_config(tmp_path / "offline", sip_ports)
    expected = sorted(summary(r) for r in import_pcap(offline, tmp_path / "span.pcap"))
    assert sorted(summary(r) for r in all_records(config_path)) == expected
    assert sorted(cid for _kind, cid, _packets in expected) == sorted(call_ids)


SYNTHETIC_CALLS, SYNTHETIC_SECONDS = 4, 3.0


def _replay_source(which: str, tmp_path: Path) -> Path:
    if which == "synthetic":
        path = tmp_path / "synthetic.pcap"
        build_capture(path, SYNTHETIC_CALLS, SYNTHETIC_SECONDS, a_host=A_ADDR, b_host=B_ADDR)
        return path
    path = CORPUS / "heplify__rtp_rtcp_sip_ipv4_udp.pcap"
    if not path.is_file():
        pytest.skip(f"public corpus file {path} is absent (see ../shared/corpus/SOURCES.md)")
    return path


def _filtered_count(capture: Path) -> int:
    """Frames of `capture` that the default tap.filter keeps, as counted by tcpdump."""
    expression = widened(TapConfig().filter)
    listed = subprocess.run(
        [require_tool("tcpdump"), "-nn", "-r", str(capture), expression],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(listed.stdout.splitlines())


def _wait_seen(span: Span, config_path: Path, frames: int) -> None:
    """Wait until the tap has read at least `frames` frames (the replay has reached it)."""
    deadline = time.monotonic() + 20
    while metrics(span.rec, config_path)["tapeline_tap_packets_seen"] < frames:
        assert time.monotonic() < deadline, metrics(span.rec, config_path)
        time.sleep(0.2)


@pytest.mark.parametrize("which", ["synthetic", "corpus"])
def test_tcpreplayed_capture_on_the_mirrored_link_is_filed_as_import_pcap_files_it(
    span: Span, tmp_path: Path, which: str
) -> None:
    tcpreplay = require_tool("tcpreplay")
    capture = _replay_source(which, tmp_path)
    frames = sum(1 for _ in read_records(capture))
    sip_ports = [5060, 5062]
    expected = sorted(
        summary(r) for r in import_pcap(_recorder_config(tmp_path / "offline", sip_ports), capture)
    )
    assert any(kind == "call" for kind, _cid, _packets in expected), expected
    if which == "synthetic":
        packets = packets_per_stream(SYNTHETIC_SECONDS)
        assert expected == sorted(
            ("call", call_id(c, A_ADDR), [packets, packets]) for c in range(SYNTHETIC_CALLS)
        )
    config_path = _recorder_config(tmp_path / "live", sip_ports)
    recorder = start_recorder(span.rec, config_path, tmp_path / "live")
    try:
        # At the capture's own pace (tcpreplay's default timing), out of vA: the mirror copies
        # each frame to the span port (namespace b drops them: they are not addressed to it).
        replayed = subprocess.run(
            in_ns(span.a, tcpreplay, "-i", "vA", str(capture)),
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert re.search(rf"Successful packets:\s+{frames}\b", replayed.stdout), replayed.stdout
        # The kernel filter (default `tap.filter`) keeps only what tcpdump's own reading of the
        # same widened expression keeps: ARP and the like never reach the tap.
        _wait_seen(span, config_path, _filtered_count(capture))
        if which == "synthetic":  # every call ended with a BYE: filed while the tap runs
            for c in range(SYNTHETIC_CALLS):
                wait_filed(config_path, call_id(c, A_ADDR))
        figures = metrics(span.rec, config_path)
    finally:
        # Stopping ends what is still open (calls without BYE, unsignalled flows) and files
        # it, as import-pcap does at the end of its file.
        _stop(recorder)
    assert recorder.returncode == 0
    assert figures["tapeline_tap_kernel_drops"] == 0
    live: list[Summary] = sorted(summary(r) for r in all_records(config_path))
    assert live == expected
