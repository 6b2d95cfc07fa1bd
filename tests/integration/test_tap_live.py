"""The live tap: two SIPp phones call each other over loopback while the recorder taps `lo`.

Everything runs in a network namespace this test creates (so other loopback traffic on the machine
cannot reach the tap, and the tap cannot see it). SIPp's caller and callee each play an A-law tone
made by sox; the filed recording must hold, sample for sample, sox's own decoding of each tone on
the right channel (channel 0 = the callee, the provisioned line; channel 1 = the caller).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, OutboxEvent
from tapeline.archive.reading import show
from tapeline.config import load_config
from tapeline.proto.net import PcapWriter, build_udp_frame
from tests.conftest import CORPUS, require_tool, write_config_file
from tests.integration.tap_support import (
    import_pcap,
    in_ns,
    loopback_netns,
    metrics,
    sox_decode,
    sox_tone,
    start_recorder,
    summary,
    wait_filed,
)

pytestmark = pytest.mark.slow
SIPP_DIR = Path(__file__).with_name("sipp")
REVIEWER = Actor(name="rita", roles=("reviewer",))
SECONDS = 2.0
PACKET_SAMPLES = 160
UAS_SIP, UAC_SIP, UAS_MEDIA, UAC_MEDIA = 5070, 5080, 16000, 18000


def _alaw_tone(freq: float) -> bytes:
    return sox_tone(freq, SECONDS, "al")


def _sox_decode(alaw: bytes) -> np.ndarray:
    return sox_decode(alaw, "al")


def _write_rtp_pcap(path: Path, payload: bytes, ssrc: int) -> None:
    """The tone as 20 ms PCMA RTP packets (SIPp replays the UDP payloads to the peer's SDP port)."""
    writer = PcapWriter()
    out = [writer.header(1)]
    t0 = 1_700_000_000 * 10**9
    for index in range(len(payload) // PACKET_SAMPLES):
        chunk = payload[index * PACKET_SAMPLES : (index + 1) * PACKET_SAMPLES]
        rtp = struct.pack("!BBHII", 0x80, 8, index, index * PACKET_SAMPLES, ssrc) + chunk
        frame = build_udp_frame("10.0.0.1", "10.0.0.2", 4000, 4002, rtp)
        out.append(writer.packet(t0 + index * 20_000_000, frame))
    path.write_bytes(b"".join(out))


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only `lo`, removed afterwards."""
    require_tool("ip")
    with loopback_netns("tapeline-tap") as name:
        yield name


@dataclass(frozen=True, slots=True)
class Setup:
    config_path: Path
    caller_tone: bytes
    callee_tone: bytes
    call_id: str


def _setup(tmp_path: Path) -> Setup:
    if shutil.which("sipp") is None:
        pytest.fail("sipp (Debian sip-tester) is not installed: make test installs it")
    require_tool("sox")
    config_path = write_config_file(tmp_path)
    config_path.write_text(
        config_path.read_text() + '\n[tap]\ninterfaces = ["lo"]\nsip_ports = [5070, 5080]\n'
    )
    caller_tone, callee_tone = _alaw_tone(440), _alaw_tone(1000)
    _write_rtp_pcap(tmp_path / "uac.pcap", caller_tone, 0x1111)
    _write_rtp_pcap(tmp_path / "uas.pcap", callee_tone, 0x2222)
    for name in ("tap_uac.xml", "tap_uas.xml"):
        shutil.copy(SIPP_DIR / name, tmp_path / name)
    call_id = f"tapeline-tap-{os.getpid()}@127.0.0.1"
    return Setup(config_path, caller_tone, callee_tone, call_id)


def _place_call(
    netns: str, tmp_path: Path, call_id: str, hold_ms: int, transport: str = "u1"
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """SIPp callee, then caller (BYE `hold_ms` after the answer); returns both processes.

    `transport` is SIPp's: `u1` (UDP) or `t1` (one TCP connection).
    """
    uas = subprocess.Popen(
        in_ns(netns, "sipp", "-sf", "tap_uas.xml", "-i", "127.0.0.1", "-p", str(UAS_SIP),
               "-mp", str(UAS_MEDIA), "-m", "1", "-nostdin", "-timeout", "30s",
               "-timeout_error", "-t", transport),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # sipp has no readiness signal; the UAC retransmits the INVITE anyway
    uac = subprocess.Popen(
        in_ns(netns, "sipp", f"127.0.0.1:{UAS_SIP}", "-sf", "tap_uac.xml", "-i",
               "127.0.0.1", "-p", str(UAC_SIP), "-mp", str(UAC_MEDIA), "-m", "1", "-d",
               str(hold_ms), "-cid_str", call_id, "-nostdin", "-timeout", "30s",
               "-timeout_error", "-t", transport),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return uas, uac


def _audio(config_path: Path, record: dict[str, Any]) -> np.ndarray:
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        _, audio = show(archive, REVIEWER, str(record["id"]), audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000
    return np.asarray(frames)


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["sip-udp", "sip-tcp"])
def test_sipp_call_over_loopback_is_tapped_and_filed_with_both_directions(
    netns: str, tmp_path: Path, transport: str
) -> None:
    setup = _setup(tmp_path)
    config_path, caller_tone, callee_tone = setup.config_path, setup.caller_tone, setup.callee_tone
    recorder = start_recorder(netns, config_path, tmp_path)
    try:
        uas, uac = _place_call(netns, tmp_path, setup.call_id, int(SECONDS * 1000) + 700, transport)
        assert uac.wait(timeout=60) == 0  # the caller got its 200 to INVITE and to BYE
        # Over TCP SIPp's callee exits 1 when the caller closes the connection during its
        # timewait; the call itself completed (the caller's exit status says so).
        uas.wait(timeout=30)
        record = wait_filed(config_path, setup.call_id)
        figures = metrics(netns, config_path)
    finally:
        recorder.terminate()
        recorder.wait(timeout=30)
    assert record["kind"] == "call", record
    assert record["source"]["path"] == "tap"
    assert record["direction"] == "inbound"
    assert record["line"]["number"] == "+442071230001"
    assert record["counterparty"]["identifier"] == "+447700900123"
    packets = len(caller_tone) // PACKET_SAMPLES
    assert sorted(s["quality"]["rtp_packets"] for s in record["streams"]) == [packets, packets]
    assert figures["tapeline_tap_calls_filed"] >= 1
    assert figures["tapeline_tap_rtp_routed"] >= 2 * packets
    assert "tapeline_tap_kernel_drops" in figures
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        with archive.index.read() as session:
            events = session.execute(select(OutboxEvent.type, OutboxEvent.data)).all()
            details = session.get_one(Interaction, record["id"]).details
        assert details["transport"] == {"u1": "udp", "t1": "tcp"}[transport]
        assert details["end_reason"] == "bye"
    finally:
        archive.close()
    ours = [(kind, data) for kind, data in events if data.get("call_ref") == setup.call_id]
    assert (
        "call.started",
        {"call_ref": setup.call_id, "source": "tap", "direction": "inbound"},
    ) in ours
    assert any(kind == "call.ended" and data["reason"] == "bye" for kind, data in ours)
    frames = _audio(config_path, record)
    for channel, tone in ((0, callee_tone), (1, caller_tone)):
        expected = _sox_decode(tone)
        got = frames[:, channel]
        start = int(np.flatnonzero(got)[0])
        assert np.array_equal(got[start : start + len(expected)], expected), f"channel {channel}"


def _wait_sealed_media(spool: Path) -> None:
    """Wait until the call's journal holds sealed media, i.e. mid-call with something to recover.

    Its chunks grow by ~17 kB per second of two G.711 directions; the SIP alone is far smaller.
    """
    deadline = time.monotonic() + 30
    while not list(spool.glob("tap-*.tpj")):
        assert time.monotonic() < deadline, "no tap journal appeared"
        time.sleep(0.1)
    (path,) = spool.glob("tap-*.tpj")
    opened = path.stat().st_size
    while path.stat().st_size < opened + 8000:
        assert time.monotonic() < deadline, "no media was sealed into the tap journal"
        time.sleep(0.05)


def test_kill_9_mid_call_then_restart_files_the_journaled_part(netns: str, tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    recorder = start_recorder(netns, setup.config_path, tmp_path)
    uas, uac = _place_call(netns, tmp_path, setup.call_id, 8000)
    spool = Path(load_config(setup.config_path, environ={}).storage.spool)
    try:
        _wait_sealed_media(spool)
        os.kill(recorder.pid, signal.SIGKILL)  # `ip netns exec` execs: this is the recorder
        recorder.wait(timeout=10)
    finally:
        uac.wait(timeout=60)
        uas.wait(timeout=30)
    (journal,) = spool.glob("tap-*.tpj")
    (tmp_path / "again").mkdir()
    restarted = start_recorder(netns, setup.config_path, tmp_path / "again")
    try:
        record = wait_filed(setup.config_path, setup.call_id)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    assert not journal.exists()  # released only after filing
    assert record["kind"] == "call", record
    assert record["incomplete"] is True
    archive = Archive.open(load_config(setup.config_path, environ={}), migrate=False)
    try:
        with archive.index.read() as session:
            details = session.get_one(Interaction, record["id"]).details
    finally:
        archive.close()
    assert details["end_reason"] == "recovered after a crash"
    assert record["source"]["path"] == "tap"
    tones = {0: setup.callee_tone, 1: setup.caller_tone}
    frames = _audio(setup.config_path, record)
    assert sorted(s["channel"] for s in record["streams"]) == [0, 1]
    for stream in record["streams"]:
        # The journal keeps a prefix of the call: the first `packets` packets of each tone.
        packets = stream["quality"]["rtp_packets"]
        assert packets > 0
        heard = packets * PACKET_SAMPLES
        expected = _sox_decode(tones[stream["channel"]])[:heard]
        got = frames[:, stream["channel"]]
        start = int(np.flatnonzero(got)[0])
        # The recovered call ends at its last journaled packet's arrival, and the recording
        # still covers that packet's audio: every journaled sample is there, exactly.
        assert np.array_equal(got[start : start + heard], expected), stream


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards: a disk this test can fill."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_spool_mid_call_loses_no_audio_and_leaves_no_journal(
    netns: str, tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = _setup(tmp_path)
    spool = small_disk / "spool"
    spool.mkdir()
    monkeypatch.setenv("TAPELINE_STORAGE__SPOOL", json.dumps(str(spool)))
    recorder = start_recorder(netns, setup.config_path, tmp_path)
    try:
        # Leave ~12 KiB: the journal opens, then a second's worth of packets does not fit.
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        (small_disk / "filler").write_bytes(b"\0" * (free - 12 * 1024))
        uas, uac = _place_call(netns, tmp_path, setup.call_id, int(SECONDS * 1000) + 700)
        assert uac.wait(timeout=60) == 0
        uas.wait(timeout=30)
        record = wait_filed(setup.config_path, setup.call_id)
        figures = metrics(netns, setup.config_path)
        assert recorder.poll() is None  # still recording
    finally:
        recorder.terminate()
        recorder.wait(timeout=30)
    assert figures["tapeline_tap_journal_failures"] >= 1
    assert list(spool.glob("tap-*.tpj")) == []  # nothing a restart would file a second time
    assert record["kind"] == "call", record
    packets = len(setup.caller_tone) // PACKET_SAMPLES
    assert sorted(s["quality"]["rtp_packets"] for s in record["streams"]) == [packets, packets]
    frames = _audio(setup.config_path, record)
    for channel, tone in ((0, setup.callee_tone), (1, setup.caller_tone)):
        expected = _sox_decode(tone)
        got = frames[:, channel]
        start = int(np.flatnonzero(got)[0])
        assert np.array_equal(got[start : start + len(expected)], expected), f"channel {channel}"


REPLAY = """
import socket, sys, time
from pathlib import Path
from tapeline.daemon.tap.offline import read_records
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("lo", 0))
records = list(read_records(Path(sys.argv[1])))
start, t0 = time.monotonic(), records[0].ts_ns
for record in records:
    late = (record.ts_ns - t0) / 1e9 - (time.monotonic() - start)
    if late > 0:
        time.sleep(late)
    sock.send(record.data)
"""


def test_replayed_capture_is_filed_live_as_import_pcap_files_it(netns: str, tmp_path: Path) -> None:
    capture = CORPUS / "heplify__sip_ipv4_tcp.pcap"
    if not capture.is_file():
        pytest.skip(f"public corpus file {capture} is absent (see ../shared/corpus/SOURCES.md)")
    offline_config = write_config_file(tmp_path / "offline")
    expected = sorted(summary(record) for record in import_pcap(offline_config, capture))
    assert [kind for kind, _id, _packets in expected] == ["call"]
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    config_path = write_config_file(live_dir)
    config_path.write_text(config_path.read_text() + '\n[tap]\ninterfaces = ["lo"]\n')
    recorder = start_recorder(netns, config_path, live_dir)
    try:
        # The capture's frames go onto the namespace's `lo` as they were captured, at their pace.
        subprocess.run(in_ns(netns, sys.executable, "-c", REPLAY, str(capture)), check=True,
                       timeout=60)  # fmt: skip
        live = [summary(wait_filed(config_path, call_id)) for _kind, call_id, _p in expected]
    finally:
        recorder.terminate()
        recorder.wait(timeout=30)
    assert sorted(live) == expected
