"""The passive tap against the public corpus, with tshark and sox as independent oracles.

Calls are counted by tshark's distinct INVITE Call-IDs, RTP packets per direction by
`tshark -z rtp,streams`, and the audio is checked sample by sample against sox's own G.711
decoding of the payloads tshark extracts. The corpus lives in ../shared/corpus and is never
copied into the repository; a test skips, naming the file, only when the corpus is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import numpy as np
import pytest

from tapeline.daemon.tap.offline import track
from tapeline.daemon.tap.tracker import CallTracker, OrphanFlow, Side, TapCall
from tests.conftest import require_tool, write_config_file

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
CLASSIC = "heplify__rtp_rtcp_sip_ipv4_udp.pcap"
TCP = "heplify__sip_ipv4_tcp.pcap"
TCP_SPLIT = "heplify__sip_ipv4_tcp_fragmented.pcap"
STREAM_ROW = re.compile(
    r"^\s*(?P<start>[\d.]+)\s+(?P<end>[\d.]+)\s+"
    r"(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+"
    r"(?P<ssrc>0x[0-9A-Fa-f]+)\s+.+?\s+(?P<pkts>\d+)\s+\d+ \(",
)


def _capture(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"public corpus file {path} is absent (see ../shared/corpus/SOURCES.md)")
    return path


def _tshark(*args: str) -> str:
    tshark = require_tool("tshark")
    return subprocess.run([tshark, *args], capture_output=True, check=True, text=True).stdout


def _tshark_streams(path: Path) -> dict[tuple[str, int, str, int], int]:
    """RTP packets per (src, sport, dst, dport) as `tshark -z rtp,streams` reports them."""
    out = _tshark("-r", str(path), "-q", "-z", "rtp,streams")
    streams = {}
    for line in out.splitlines():
        if m := STREAM_ROW.match(line):
            key = (m["src"], int(m["sport"]), m["dst"], int(m["dport"]))
            streams[key] = int(m["pkts"])
    return streams


def _tshark_durations(path: Path) -> dict[tuple[str, int, str, int], float]:
    """Seconds from first to last packet per stream, as `tshark -z rtp,streams` reports them."""
    out = _tshark("-r", str(path), "-q", "-z", "rtp,streams")
    return {
        (m["src"], int(m["sport"]), m["dst"], int(m["dport"])): float(m["end"]) - float(m["start"])
        for line in out.splitlines()
        if (m := STREAM_ROW.match(line))
    }


def _tshark_invites(path: Path, *decode_as: str) -> set[str]:
    out = _tshark("-r", str(path), *decode_as, "-Y", 'sip.Method == "INVITE"', "-T", "fields",
                  "-e", "sip.Call-ID")  # fmt: skip
    return {line.strip() for line in out.splitlines() if line.strip()}


def _calls(path: Path, tracker: CallTracker | None = None) -> list[TapCall]:
    tracker = tracker or CallTracker()
    calls: list[TapCall] = []
    track([path], tracker, lambda event: calls.append(event.call))
    return calls


def _stream_key(call: TapCall, sender: Side) -> tuple[str, int, str, int]:
    """(src, sport, dst, dport) of what `sender` sent, from the SDP endpoints it learned."""
    (src, sport) = min(call.endpoints[sender], key=lambda e: e[1])
    (dst, dport) = min(call.endpoints[sender.other], key=lambda e: e[1])
    return str(src), sport, str(dst), dport


def test_classic_g711_call_counts_equal_tshark() -> None:
    path = _capture(CLASSIC)
    calls = _calls(path)
    assert {c.call_id for c in calls} == _tshark_invites(path)
    answered = [c for c in calls if c.answered is not None]
    assert len(answered) == 1
    call = answered[0]
    streams = _tshark_streams(path)
    durations = _tshark_durations(path)
    for sender in Side:
        key = _stream_key(call, sender)
        assert call.rtp_packets[sender] == streams[key], key
        assert call.rules[sender] == "sdp"
        ours = call.rtp_last[sender] - call.rtp_first[sender]
        assert ours == pytest.approx(durations[key], abs=2e-6), key  # tshark prints µs
    # The third stream tshark lists is MGCP-signalled media, which no SIP call may claim.
    routed = sum(c.rtp_packets[s] for c in calls for s in Side)
    assert routed == sum(streams.values()) - min(streams.values())
    unanswered = next(c for c in calls if c.answered is None)
    assert unanswered.end_reason == "capture_ended"
    assert sum(unanswered.rtp_packets.values()) == 0


def test_sip_over_tcp_call_and_rtp_counts_equal_tshark() -> None:
    path = _capture(TCP)
    calls = _calls(path)
    assert [c.call_id for c in calls] == sorted(_tshark_invites(path))
    (call,) = calls
    assert call.transport == "tcp"
    assert call.end_reason == "bye"
    streams = _tshark_streams(path)
    assert {_stream_key(call, s): call.rtp_packets[s] for s in Side} == streams
    durations = _tshark_durations(path)
    for sender in Side:
        ours = call.rtp_last[sender] - call.rtp_first[sender]
        assert ours == pytest.approx(durations[_stream_key(call, sender)], abs=2e-6)


def test_split_tcp_segments_on_port_6060_every_dialog_found() -> None:
    path = _capture(TCP_SPLIT)
    tracker = CallTracker(sip_ports=frozenset({6060}))
    calls = _calls(path, tracker)
    expected = _tshark_invites(path, "-d", "tcp.port==6060,sip")
    assert {c.call_id for c in calls} == expected
    assert len(calls) == len(expected)  # one record per dialog, re-INVITEs included
    sip_frames = _tshark("-r", str(path), "-d", "tcp.port==6060,sip", "-Y", "sip", "-T", "fields",
                         "-e", "sip.CSeq")  # fmt: skip
    messages = sum(len(line.split(",")) for line in sip_frames.splitlines() if line)
    assert tracker.counters.sip_messages == messages
    assert tracker.counters.sip_malformed == 0
    finals = _tshark("-r", str(path), "-d", "tcp.port==6060,sip", "-Y",
                     'sip.CSeq.method == "INVITE" && sip.Status-Code >= 300', "-T", "fields",
                     "-e", "sip.Call-ID", "-e", "sip.Status-Code")  # fmt: skip
    rejected: dict[str, int] = {}
    for line in finals.splitlines():
        call_id, codes = line.split("\t")
        rejected.setdefault(call_id, int(codes.split(",")[0]))
    by_id = {c.call_id: c for c in calls}
    checked = 0
    for call_id, code in rejected.items():
        call = by_id.get(call_id)  # absent: the capture began after that dialog's INVITE
        if call is not None and call.answered is None:
            assert call.final_status == code, call_id
            assert call.end_reason in {f"rejected_{code}", "cancel"}, call_id
            checked += 1
    assert checked >= 2  # the 403 and a 487 after CANCEL, at least


def _sox_alaw(payload_hex: list[str], sox: str) -> np.ndarray:
    raw = b"".join(bytes.fromhex(h.replace(":", "")) for h in payload_hex)
    done = subprocess.run(
        [sox, "-t", "raw", "-e", "a-law", "-b", "8", "-r", "8000", "-c", "1", "-",
         "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-"],
        input=raw, capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(done.stdout, dtype="<i2")


# Streams whose RTP timestamps advance with their arrival: the timeline anchors them once, so each
# packet's audio sits exactly at its RTP timestamp. (The classic capture's caller stream is relayed
# with timestamps jumping ahead of arrival; the timeline re-anchors it on arrival by design, see
# media/timeline.py, so a timestamp-only oracle does not apply to it.)
SAMPLE_EXACT = [(CLASSIC, Side.CALLEE), (TCP, Side.CALLER), (TCP, Side.CALLEE)]


@pytest.mark.parametrize(("capture", "sender"), SAMPLE_EXACT)
def test_g711_audio_is_sample_exact_against_sox(capture: str, sender: Side, need_sox: str) -> None:
    path = _capture(capture)
    call = next(c for c in _calls(path) if c.answered is not None)
    result = call.media.finish(end=call.ended if call.ended is not None else call.last_seen)
    assert result.sample_rate == 8000
    src, sport, dst, dport = _stream_key(call, sender)
    out = _tshark("-r", str(path), "-d", f"udp.port=={dport},rtp", "-Y",
                  f"rtp && ip.src=={src} && udp.srcport=={sport} && ip.dst=={dst} "
                  f"&& udp.dstport=={dport}", "-T", "fields", "-e", "rtp.timestamp",
                  "-e", "rtp.p_type", "-e", "rtp.payload")  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == call.rtp_packets[sender]
    pcma = [(int(ts), payload) for ts, pt, payload in rows if pt == "8"]
    assert len(pcma) > 10
    expected = _sox_alaw([payload for _ts, payload in pcma], need_sox)
    ours = result.stereo[:, call.channel_of(sender)]
    first = expected[: len(bytes.fromhex(pcma[0][1].replace(":", "")))]
    windows = np.lib.stride_tricks.sliding_window_view(ours, len(first))
    start = int(np.flatnonzero((windows == first).all(axis=1))[0])
    offset = 0
    for ts, payload in pcma:
        size = len(bytes.fromhex(payload.replace(":", "")))
        at = start + (ts - pcma[0][0])
        assert np.array_equal(ours[at : at + size], expected[offset : offset + size]), ts
        offset += size
    assert offset == len(expected)


def test_import_pcap_cli_prints_one_record_per_call(tmp_path: Path) -> None:
    path = _capture(CLASSIC)
    config = write_config_file(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "tap", "import", "-c", str(config), str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = sorted(r["kind"] for r in records)
    assert kinds == ["call", "capture_failure", "orphan_stream"]
    assert len([r for r in records if r["kind"] != "orphan_stream"]) == len(_tshark_invites(path))
    # The relay's other leg is signalled by MGCP, not SIP: tshark finds it only heuristically, and
    # it must come out as one orphan record (its two directions are one conversation) whose
    # streams have the same SSRCs and packet counts (the 6-packet stream is below
    # `tap.orphan_min_packets` and only counted).
    heuristic = _tshark("-r", str(path), "-o", "rtp.heuristic_rtp:TRUE", "-q", "-z", "rtp,streams")
    signalled = _tshark_streams(path)
    unsignalled = sorted(
        (int(m["ssrc"], 16), int(m["pkts"]))
        for line in heuristic.splitlines()
        if (m := STREAM_ROW.match(line))
        and (m["src"], int(m["sport"]), m["dst"], int(m["dport"])) not in signalled
        and int(m["pkts"]) >= 50  # the default tap.orphan_min_packets
    )
    orphans = sorted(
        (stream["ssrc"], stream["quality"]["rtp_packets"])
        for r in records
        if r["kind"] == "orphan_stream"
        for stream in r["streams"]
    )
    assert orphans == unsignalled
    assert len(unsignalled) == 2
    by_kind = {r["kind"]: r for r in records}
    call, failure = by_kind["call"], by_kind["capture_failure"]
    # The relay leg is loud real G.711 (7.74 bits a byte): audio, never judged to be ciphertext.
    orphan = by_kind["orphan_stream"]
    assert "encrypted_media" not in orphan["tags"]
    assert orphan["recording"] is not None
    assert call["source"]["path"] == "tap"
    assert call["channel"] == "voice"
    assert call["source"]["sip_call_id"] == "12013223@200.57.7.195"
    counts = sorted(s["quality"]["rtp_packets"] for s in call["streams"])
    assert counts == sorted(v for v in _tshark_streams(path).values() if v > 10)
    assert call["recording"] is not None
    assert failure["outcome"] == "unanswered"
    bad = tmp_path / "not-a-capture.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    refused = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config), str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "not-a-capture.pcap" in refused.stderr
    assert shutil.which("tshark")


# RTP without any signalling becomes an orphan stream; its figures must equal what rtpproxy's
# extractaudio published for the same files (SOURCES.md, appendix A).
RTPPROXY_EXPECTED = {
    "rtpproxy__dups.a.rtp.pcap": {"received": 383, "duplicates": 1, "lost": 0},
    "rtpproxy__weird.o.rtp.pcap": {"expected": 3379, "received": 1273, "lost": 2106},
    "rtpproxy__sess6.a.rtp.pcap": {"expected": 2546, "received": 2546, "lost": 0},
    "rtpproxy__G723_1.a.rtp.pcap": {"received": 392, "lost": 0},
}


def _orphans(path: Path, tracker: CallTracker) -> list[OrphanFlow]:
    flows: list[OrphanFlow] = []
    track([path], tracker, lambda _e: None, lambda event: flows.append(event.flow))
    return flows


@pytest.mark.parametrize(("capture", "expected"), sorted(RTPPROXY_EXPECTED.items()))
def test_unsignalled_rtp_statistics_equal_rtpproxy(capture: str, expected: dict[str, int]) -> None:
    path = _capture(capture)
    (flow,) = _orphans(path, CallTracker())
    quality = flow.media.finish(end=flow.last_seen).quality[0]
    assert {k: getattr(quality, k) for k in expected} == expected
    assert quality.undecodable == 0  # G.729 and G.723.1 decoded, not just counted


SRTP = {
    "rtpproxy__alice_srtp.pcap": (
        "192.168.1.81:43830",
        "9sOd+W72ilwfNgNt0FzlGYj6YZPMqN1sJJx43UuS",
        1556,
    ),
    "rtpproxy__bob_srtp.pcap": (
        "192.168.1.81:41602",
        "NhqBK/JjtVJgmOgPyDKpvMTEjvFCQ4eiyVQelF6x",
        1564,
    ),
}


@pytest.mark.parametrize("capture", sorted(SRTP))
def test_srtp_g722_with_out_of_band_key(capture: str, tmp_path: Path) -> None:
    path = _capture(capture)
    where, key, packets = SRTP[capture]
    config = write_config_file(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config), str(path),
         "--srtp-key", f"{where}={key}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["kind"] == "orphan_stream"
    (stream,) = record["streams"]
    quality = stream["quality"]
    assert (quality["received"], quality["lost"], quality["srtp_auth_failures"]) == (packets, 0, 0)
    frames = _tshark("-r", str(path), "-T", "fields", "-e", "frame.number")
    assert quality["rtp_packets"] == len(frames.split()) == packets
    assert record["recording"]["sample_rate"] == 16000  # G.722 is wideband audio
    other_key = next(v[1] for k, v in SRTP.items() if k != capture)
    wrong = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config), str(path),
         "--srtp-key", f"{where}={other_key}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (bad,) = [json.loads(line) for line in wrong.stdout.splitlines()]
    assert bad["streams"][0]["quality"]["srtp_auth_failures"] == packets
    assert bad["recording"] is None  # nothing authenticated, nothing decoded


def test_dtmf_events_equal_tshark_rtpevent() -> None:
    path = _capture("rtpproxy__catch_dtmf.pcapng")
    ports = (24270, 24272)
    codecs = {(ip_address("127.0.0.1"), p): ("telephone-event", 8000) for p in ports}
    flows = _orphans(path, CallTracker(orphan_min_packets=1, orphan_codecs=codecs))
    out = _tshark("-r", str(path), "-o", "rtp.heuristic_rtp:TRUE", "-T", "fields",
                  "-e", "udp.dstport", "-e", "rtp.timestamp",
                  "-e", "rtpevent.event_id")  # fmt: skip
    expected: dict[int, list[str]] = {p: [] for p in ports}
    for line in dict.fromkeys(out.splitlines()):  # one event per (port, timestamp)
        port, _ts, event = line.split("\t")
        expected[int(port)].append("0123456789*#"[int(event)])
    assert sorted(f.dport for f in flows) == list(ports)
    for flow in flows:
        result = flow.media.finish(end=flow.last_seen)
        assert [e.symbol for _channel, e in result.dtmf] == expected[flow.dport]
        assert all(e.ended for _channel, e in result.dtmf)
