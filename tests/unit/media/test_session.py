"""Timeline and session: silence fill, placement by timestamp, resampling, CN, DTMF, stereo."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.media.formats import PayloadFormat
from tapeline.media.jitter import OrderedPacket
from tapeline.media.session import MediaSession
from tapeline.media.timeline import ChannelTimeline
from tapeline.proto.rtp import RtpPacket

if TYPE_CHECKING:
    from collections.abc import Callable

PCMU = {0: PayloadFormat(payload_type=0, encoding_name="PCMU", clock_rate=8000)}
EVENTS = {
    **PCMU,
    101: PayloadFormat(payload_type=101, encoding_name="telephone-event", clock_rate=8000),
}
LOUD_ULAW = 0x80  # decodes to +32124


def _rtp(sequence: int, timestamp: int, payload: bytes, *, pt: int = 0, ssrc: int = 7) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, sequence % 65536, timestamp % (1 << 32), ssrc) + payload


def _feed(stream_send: Callable[[bytes, float], None], packets: list[tuple[float, bytes]]) -> None:
    for now, data in packets:
        stream_send(data, now)


def _talk(
    start: float, seconds: float, *, seq0: int = 0, ts0: int = 0
) -> list[tuple[float, bytes]]:
    count = round(seconds / 0.02)
    return [
        (start + i * 0.02, _rtp(seq0 + i, ts0 + i * 160, bytes([LOUD_ULAW]) * 160))
        for i in range(count)
    ]


@pytest.mark.parametrize("end", [10.0, 10.013, 61.25])
def test_audio_length_equals_call_length_with_silence_fill(end: float) -> None:
    media = MediaSession(start=100.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    packets = _talk(101.0, 2.0)
    del packets[20:40]  # 400 ms of loss in the middle
    _feed(stream.receive_datagram, packets)
    result = media.finish(end=100.0 + end)
    assert result.sample_rate == 8000
    assert abs(len(result.stereo) / 8000 - end) <= 0.020
    left = result.stereo[:, 0]
    assert not left[:8000].any()  # one second before the first packet is silence
    assert left[8000:8160].all()
    assert not left[8000 + 20 * 160 : 8000 + 40 * 160].any()  # the loss stays silent
    assert left[8000 + 40 * 160 : 8000 + 100 * 160].all()
    assert not result.stereo[:, 1].any()
    assert result.quality[0].lost == 20
    assert result.one_way is False  # only one channel has a stream at all


def test_cover_audio_keeps_the_last_packets_sound_past_its_arrival() -> None:
    media = MediaSession(start=100.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    packets = _talk(100.0, 1.0)  # 50 packets, the last one arriving at 100.98
    _feed(stream.receive_datagram, packets)
    last_arrival = packets[-1][0]
    cut = media.finish(end=last_arrival)
    assert len(cut.stereo) == round(0.98 * 8000)  # the last packet's 20 ms are lost
    media = MediaSession(start=100.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    _feed(stream.receive_datagram, packets)
    whole = media.finish(end=last_arrival, cover_audio=True)
    assert len(whole.stereo) == 8000
    assert whole.stereo[:, 0].all()


def test_hold_with_frozen_timestamps_is_reanchored_on_arrival() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=1, formats=PCMU)
    _feed(stream.receive_datagram, _talk(0.0, 1.0))
    # 5 s of hold; the sender resumes with its timestamp as if no time had passed.
    _feed(stream.receive_datagram, _talk(6.0, 1.0, seq0=50, ts0=50 * 160))
    right = media.finish(end=8.0).stereo[:, 1]
    assert right[:8000].all()
    assert not right[8000 : 6 * 8000].any()
    assert right[6 * 8000 : 7 * 8000].all()
    assert not right[7 * 8000 :].any()


def test_timestamps_place_audio_despite_arrival_jitter() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    packets = _talk(1.0, 1.0)
    jittered = [(now + (0.015 if i % 2 else 0.0), data) for i, (now, data) in enumerate(packets)]
    _feed(stream.receive_datagram, jittered)
    left = media.finish(end=3.0).stereo[:, 0]
    assert np.flatnonzero(left)[[0, -1]].tolist() == [8000, 16000 - 1]
    assert left[8000:16000].all()


def test_ssrc_change_keeps_the_channel_and_anchors_the_new_segment() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    _feed(stream.receive_datagram, _talk(0.0, 1.0))
    second = [
        (2.0 + i * 0.02, _rtp(9000 + i, 123456 + i * 160, bytes([LOUD_ULAW]) * 160, ssrc=8))
        for i in range(50)
    ]
    _feed(stream.receive_datagram, second)
    result = media.finish(end=3.0)
    left = result.stereo[:, 0]
    assert left[2 * 8000 : 3 * 8000].all()
    assert not left[8000 : 2 * 8000].any()
    assert result.quality[0].ssrcs == (7, 8)
    assert result.quality[0].lost == 0


def test_wideband_stream_makes_the_call_16k_and_upsamples_narrowband() -> None:
    g722 = {9: PayloadFormat(payload_type=9, encoding_name="G722", clock_rate=8000)}
    media = MediaSession(start=0.0)
    wide = media.add_stream(channel=0, formats=g722)
    narrow = media.add_stream(channel=1, formats=PCMU)
    # 160 octets of G.722 per 20 ms; the RTP timestamp still advances by 160 (8000 Hz clock).
    for i in range(50):
        wide.receive_datagram(_rtp(i, i * 160, bytes(160), pt=9), i * 0.02)
    _feed(narrow.receive_datagram, _talk(0.0, 1.0))
    result = media.finish(end=2.0)
    assert result.sample_rate == 16000
    assert result.stereo.shape == (32000, 2)
    right = result.stereo[:, 1]
    assert right[:16000].all()
    assert not right[16000:].any()
    assert result.quality[0].received == 50


def test_comfort_noise_unknown_types_and_garbage_are_silence_and_counted() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    stream.receive_datagram(_rtp(0, 0, bytes([LOUD_ULAW]) * 160), 0.0)
    stream.receive_datagram(_rtp(1, 160, b"\x40", pt=13), 0.02)  # CN: silence
    stream.receive_datagram(_rtp(2, 320, b"x" * 10, pt=96), 0.04)  # unknown PT
    stream.receive_datagram(b"\x80", 0.05)  # too short for anything
    stream.receive_datagram(b"\x40" + bytes(20), 0.05)  # not RTP version 2
    stream.receive_datagram(b"\x80\xc8\x00\x09", 0.05)  # truncated RTCP SR
    result = media.finish(end=0.1)
    left = result.stereo[:, 0]
    assert left[:160].all()
    assert not left[160:].any()
    assert result.quality[0].undecodable == 4


def test_rtcp_sender_reports_are_kept() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=PCMU)
    sr = struct.pack("!BBHI", 0x80, 200, 6, 7) + struct.pack("!IIIII", 1, 2, 3, 4, 5)
    stream.receive_datagram(sr, 0.0)
    assert stream.sender_reports[7].rtp_timestamp == 3


def test_dtmf_events_are_deduplicated_and_not_audio() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=1, formats=EVENTS)
    _feed(stream.receive_datagram, _talk(0.0, 0.2))
    event_ts = 1600

    def event(seq: int, duration: int, *, end: bool) -> bytes:
        body = struct.pack("!BBH", 5, (0x80 if end else 0) | 10, duration)
        return _rtp(seq, event_ts, body, pt=101)

    updates = [event(10, 160, end=False), event(11, 320, end=False)]
    updates += [event(12, 800, end=True)] * 3
    for index, data in enumerate(updates):
        stream.receive_datagram(data, 0.2 + index * 0.02)
    result = media.finish(end=1.0)
    ((channel, dtmf),) = result.dtmf
    assert (channel, dtmf.symbol, dtmf.ended, dtmf.volume) == (1, "5", True, 10)
    assert dtmf.start == pytest.approx(0.2)
    assert dtmf.duration == pytest.approx(0.1)
    assert not result.stereo[1600:, 1].any()
    assert "5" not in repr(dtmf).replace("0.", "")


def test_one_way_when_one_channel_is_silent() -> None:
    media = MediaSession(start=0.0)
    talker = media.add_stream(channel=0, formats=PCMU)
    media.add_stream(channel=1, formats=PCMU)
    _feed(talker.receive_datagram, _talk(0.0, 2.0))
    assert media.finish(end=2.0).one_way


def test_add_stream_rejects_a_third_channel() -> None:
    with pytest.raises(ValueError, match="channel must be 0 or 1, not 2"):
        MediaSession(start=0.0).add_stream(channel=2, formats=PCMU)


def test_timeline_render_before_start_and_overlap_clip() -> None:
    timeline = ChannelTimeline(session_start=10.0, formats=PCMU)
    packet = RtpPacket(
        marker=False,
        payload_type=0,
        sequence_number=1,
        timestamp=0,
        ssrc=1,
        payload=bytes([LOUD_ULAW]) * 160,
    )
    timeline.add(OrderedPacket(packet=packet, arrival=9.99, segment=0))  # 10 ms before start
    out = timeline.render(end=10.05, rate=8000)
    assert len(out) == 400
    assert out[:80].all()
    assert not out[80:].any()


ANY_CODEC = {
    0: PayloadFormat(payload_type=0, encoding_name="PCMU", clock_rate=8000),
    9: PayloadFormat(payload_type=9, encoding_name="G722", clock_rate=8000),
    18: PayloadFormat(payload_type=18, encoding_name="G729", clock_rate=8000),
    96: PayloadFormat(payload_type=96, encoding_name="AMR", clock_rate=8000),
    97: PayloadFormat(payload_type=97, encoding_name="AMR-WB", clock_rate=16000),
    98: PayloadFormat(payload_type=98, encoding_name="opus", clock_rate=48000, channels=2),
    99: PayloadFormat(payload_type=99, encoding_name="GSM", clock_rate=8000),
    100: PayloadFormat(payload_type=100, encoding_name="EVS", clock_rate=16000),
    101: PayloadFormat(payload_type=101, encoding_name="telephone-event", clock_rate=8000),
}


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(ANY_CODEC)), st.integers(0, 65535), st.binary(max_size=80)
        ),
        max_size=20,
    )
)
def test_arbitrary_payloads_never_escape_the_stream(packets: list[tuple[int, int, bytes]]) -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=ANY_CODEC)
    for index, (pt, sequence, payload) in enumerate(packets):
        stream.receive_datagram(_rtp(sequence, sequence * 160, payload, pt=pt), index * 0.02)
        stream.receive_datagram(payload, index * 0.02)
    result = media.finish(end=len(packets) * 0.02 + 0.1)
    assert len(result.stereo) in {round((len(packets) * 0.02 + 0.1) * r) for r in (8000, 16000)}


def test_dtmf_before_audio_is_placed_by_arrival_and_does_not_anchor_audio() -> None:
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=EVENTS)
    body = struct.pack("!BBH", 11, 0x80 | 3, 400)
    stream.receive_datagram(_rtp(0, 999_999, body, pt=101), 0.5)
    _feed(stream.receive_datagram, _talk(1.0, 0.5, seq0=1, ts0=8000))
    result = media.finish(end=2.0)
    ((_, dtmf),) = result.dtmf
    assert dtmf.start == pytest.approx(0.5)
    assert result.stereo[8000:12000, 0].all()
    assert not result.stereo[:8000, 0].any()
