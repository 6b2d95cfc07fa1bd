"""The media pipeline on real captures from the public corpus (siprec.md §13.3 expectations).

These read `<repo root>/../shared/corpus` in place and skip when it is absent.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tapeline.media.codecs import create_decoder
from tapeline.media.formats import PayloadFormat
from tapeline.media.jitter import ReorderBuffer
from tapeline.media.session import MediaSession
from tapeline.proto.rtp import parse_rtp
from tests.conftest import require_tool
from tests.unit.media.pcapfile import corpus_file, read_udp

pytestmark = pytest.mark.skipif(
    not corpus_file("SOURCES.md").exists(), reason="corpus ../shared/corpus is not present"
)
G729_PT = 18
TELEPHONE_EVENT_101 = {
    101: PayloadFormat(payload_type=101, encoding_name="telephone-event", clock_rate=8000)
}


def _stats(name: str) -> tuple[int, int, int, int]:
    buffer = ReorderBuffer(clock_rate=8000)
    released = 0
    for datagram in read_udp(corpus_file(name)):
        released += len(buffer.push(parse_rtp(datagram.payload), datagram.time))
    released += len(buffer.flush())
    stats = buffer.stats
    assert released == stats.received - stats.late
    return stats.expected, stats.received, stats.lost, stats.duplicates


def test_dups_capture_has_383_unique_and_one_duplicate() -> None:
    assert _stats("rtpproxy__dups.a.rtp.pcap") == (383, 383, 0, 1)


def test_weird_capture_loses_2106_of_3379() -> None:
    assert _stats("rtpproxy__weird.o.rtp.pcap") == (3379, 1273, 2106, 0)


def test_sess6_sequence_resets_lose_nothing() -> None:
    expected, received, lost, duplicates = _stats("rtpproxy__sess6.a.rtp.pcap")
    assert (expected, received, lost, duplicates) == (2546, 2546, 0, 0)


def test_catch_dtmf_gives_19_events_on_two_streams() -> None:
    datagrams = read_udp(corpus_file("rtpproxy__catch_dtmf.pcapng"))
    media = MediaSession(start=datagrams[0].time)
    ports = sorted({d.destination[1] for d in datagrams})
    streams = {
        port: media.add_stream(channel=index, formats=TELEPHONE_EVENT_101)
        for index, port in enumerate(ports)
    }
    for datagram in datagrams:
        streams[datagram.destination[1]].receive_datagram(datagram.payload, now=datagram.time)
    result = media.finish(end=datagrams[-1].time)
    by_ssrc: dict[int, str] = {}
    for _, event in result.dtmf:
        by_ssrc[event.ssrc] = by_ssrc.get(event.ssrc, "") + event.symbol
        assert event.ended
    assert by_ssrc == {0x37ED87F3: "123456789*0#5", 0xEE693E61: "54321#"}
    assert not result.stereo.any()  # events are never audio
    assert "symbol" not in repr(result.dtmf[0][1])


def test_heplify_g711_stream_jitter_matches_wireshark() -> None:
    # Wireshark's test suite: 548 packets, 0 lost, max delta 5843.742 ms, max jitter 7.406751 ms.
    datagrams = [
        d
        for d in read_udp(corpus_file("heplify__rtp_rtcp_sip_ipv4_udp.pcap"))
        if d.source == ("200.57.7.204", 8000) and d.destination == ("200.57.7.196", 40376)
    ]
    media = MediaSession(start=datagrams[0].time)
    pcma = {8: PayloadFormat(payload_type=8, encoding_name="PCMA", clock_rate=8000)}
    stream = media.add_stream(channel=0, formats=pcma)
    for datagram in datagrams:
        stream.receive_datagram(datagram.payload, now=datagram.time)
    (quality,) = media.finish(end=datagrams[-1].time).quality
    assert (quality.expected, quality.received, quality.lost) == (548, 548, 0)
    assert quality.max_jitter_ms == pytest.approx(7.406751, abs=0.001)
    assert quality.longest_gap_ms == pytest.approx(5843.742, abs=0.001)
    assert quality.ssrcs == (0xD2BD4E3E,)


def test_g729_corpus_stream_decodes_exactly_as_the_ffmpeg_cli_does() -> None:
    """Our G.729 path against an independent decode of the same frames by the ffmpeg program."""
    ffmpeg = require_tool("ffmpeg")
    frames = b"".join(
        rtp.payload
        for datagram in read_udp(corpus_file("rtpproxy__sess6.a.rtp.pcap"))
        if (rtp := parse_rtp(datagram.payload)).payload_type == G729_PT and rtp.payload
    )
    frames = frames[: len(frames) - len(frames) % 10]  # whole 10-byte frames (no SID in here)
    assert len(frames) >= 1000
    decoder = create_decoder("G729")
    ours = np.concatenate([decoder.decode(frames[i : i + 20]) for i in range(0, len(frames), 20)])
    reference = np.frombuffer(
        subprocess.run(
            [ffmpeg, "-v", "error", "-f", "g729", "-i", "-", "-f", "s16le", "-ac", "1", "-"],
            input=frames,
            capture_output=True,
            check=True,
        ).stdout,
        dtype="<i2",
    )
    assert len(ours) == len(reference) == len(frames) // 10 * 80
    assert np.count_nonzero(reference) > len(reference) // 2  # real speech, not silence
    assert np.array_equal(ours, reference)
