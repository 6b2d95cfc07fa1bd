"""RTP/RTCP/telephone-event parsing (RFC 3550, RFC 4733, RFC 5761)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import RtpParseError
from tapeline.proto.rtp import (
    RtcpBye,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtcpSourceDescription,
    RtcpUnknown,
    RtpPacket,
    TelephoneEvent,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
)

# V=2 P X CC=2 | M PT=8 | seq | ts | ssrc | 2 CSRC | ext 0xBEDE, 1 word | payload | pad 3
FULL_RTP = (
    struct.pack("!BBHII", 0xB2, 0x88, 0xBEEF, 0x01020304, 0xDEADBEEF)
    + struct.pack("!II", 11, 22)
    + struct.pack("!HH", 0xBEDE, 1)
    + b"\x10\xaa\x00\x00"
    + b"\xd5\xd5\xd5\xd5"
    + b"\x00\x00\x03"
)
REPORT = struct.pack("!IIIIII", 0x1111, (25 << 24) | 0xFFFFFE, 70000, 123, 0x1234, 0x5678)
SR = (
    struct.pack("!BBH", 0x81, 200, 12)
    + struct.pack("!I", 0xCAFE)
    + struct.pack("!IIIII", 0xE0000000, 0x80000000, 160000, 50, 8000)
    + REPORT
)
SDES = struct.pack("!BBH", 0x81, 202, 3) + struct.pack("!I", 0xCAFE) + b"\x01\x03abc\x00\x00\x00"
BYE = struct.pack("!BBH", 0x81, 203, 2) + struct.pack("!I", 0xCAFE) + b"\x02ok\x00"
RR = struct.pack("!BBH", 0x81, 201, 7) + struct.pack("!I", 0xBEEF) + REPORT
APP = struct.pack("!BBH", 0x80, 204, 1) + b"name"


def test_parse_rtp_reads_every_header_field() -> None:
    assert parse_rtp(FULL_RTP) == RtpPacket(
        marker=True,
        payload_type=8,
        sequence_number=0xBEEF,
        timestamp=0x01020304,
        ssrc=0xDEADBEEF,
        csrc=(11, 22),
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding_length=3,
        payload=b"\xd5\xd5\xd5\xd5",
    )


def test_parse_rtp_minimal_packet_has_empty_payload() -> None:
    packet = parse_rtp(struct.pack("!BBHII", 0x80, 0, 1, 2, 3))
    assert (packet.payload, packet.marker, packet.csrc, packet.extension_profile) == (
        b"",
        False,
        (),
        None,
    )


@pytest.mark.parametrize("length", range(len(FULL_RTP) - 1))
def test_every_truncated_rtp_prefix_raises_rtp_parse_error(length: int) -> None:
    # Cutting the trailing padding octet breaks the padding count, so every prefix is invalid.
    with pytest.raises(RtpParseError):
        parse_rtp(FULL_RTP[:length])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x40" + bytes(11), "RTP version is not 2"),
        (b"\x80\x00", "RTP packet shorter than the fixed header"),
        (b"\xa0" + bytes(11) + b"\x00", "RTP padding length is invalid"),
        (b"\xa0" + bytes(11) + b"\x05", "RTP padding length is invalid"),
        (b"\xa0" + bytes(11), "RTP padding length is invalid"),
        (b"\x81" + bytes(11), "RTP CSRC list runs past the end of the packet"),
        (b"\x90" + bytes(11) + b"\xbe\xde", "RTP header extension runs past the end of the packet"),
        (
            b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),
            "RTP header extension runs past the end of the packet",
        ),
    ],
)
def test_malformed_rtp_messages_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=f"^{message}$"):
        parse_rtp(data)


def test_parse_rtcp_compound_sr_sdes_bye() -> None:
    sender, sdes, bye = parse_rtcp(SR + SDES + BYE)
    assert isinstance(sender, RtcpSenderReport)
    assert sender.ssrc == 0xCAFE
    assert sender.ntp_timestamp == 0xE0000000_80000000
    assert (sender.rtp_timestamp, sender.packet_count, sender.octet_count) == (160000, 50, 8000)
    (block,) = sender.reports
    assert (block.ssrc, block.fraction_lost, block.cumulative_lost) == (0x1111, 25, -2)
    assert (block.highest_sequence, block.jitter, block.last_sr, block.delay_since_last_sr) == (
        70000,
        123,
        0x1234,
        0x5678,
    )
    assert isinstance(sdes, RtcpSourceDescription)
    assert sdes.chunks[0].ssrc == 0xCAFE
    assert sdes.chunks[0].cname == b"abc"
    assert sdes == RtcpSourceDescription(chunks=sdes.chunks)
    assert bye == RtcpBye(sources=(0xCAFE,), reason=b"ok")


def test_parse_rtcp_rr_and_unknown_types_pass_through() -> None:
    receiver, app = parse_rtcp(RR + APP)
    assert isinstance(receiver, RtcpReceiverReport)
    assert receiver.ssrc == 0xBEEF
    assert receiver.reports[0].cumulative_lost == -2
    assert app == RtcpUnknown(packet_type=204, count=0, body=b"name")


def test_parse_rtcp_strips_padding() -> None:
    padded = struct.pack("!BBH", 0xA0, 201, 2) + struct.pack("!I", 7) + b"\x00\x00\x00\x04"
    assert parse_rtcp(padded) == (RtcpReceiverReport(ssrc=7),)


def test_sdes_chunk_without_cname() -> None:
    sdes = struct.pack("!BBH", 0x81, 202, 2) + struct.pack("!I", 1) + b"\x02\x01x\x00"
    (packet,) = parse_rtcp(sdes)
    assert isinstance(packet, RtcpSourceDescription)
    assert packet.chunks[0].cname is None
    assert packet.chunks[0].items == ((2, b"x"),)


@pytest.mark.parametrize("packet", [SR, SDES, BYE, RR])
def test_every_truncated_rtcp_prefix_raises_rtp_parse_error(packet: bytes) -> None:
    for length in range(len(packet)):
        with pytest.raises(RtpParseError):
            parse_rtcp(packet[:length])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTCP datagram is empty"),
        (b"\x40\xc8\x00\x00", "RTCP version is not 2"),
        (b"\x80\xc8", "RTCP header truncated"),
        (b"\x80\xc9\x00\x05", "RTCP packet length runs past the end of the datagram"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "RTCP padding length is invalid"),
        (b"\x80\xc8\x00\x01\x00\x00\x00\x00", "RTCP SR shorter than its sender info"),
        (b"\x80\xc9\x00\x00", "RTCP RR shorter than its SSRC"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x00", "RTCP report blocks run past the end of the packet"),
        (b"\x81\xca\x00\x00", "RTCP SDES chunk truncated"),
        (b"\x81\xca\x00\x01\x00\x00\x00\x00", "RTCP SDES item list not terminated"),
        (
            b"\x81\xca\x00\x02\x00\x00\x00\x00\x01\x09ab",
            "RTCP SDES item runs past the end of the packet",
        ),
        (
            b"\x82\xcb\x00\x01\x00\x00\x00\x00",
            "RTCP BYE source list runs past the end of the packet",
        ),
        (b"\x80\xcb\x00\x01\x05abc", "RTCP BYE reason runs past the end of the packet"),
    ],
)
def test_malformed_rtcp_messages_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=f"^{message}$"):
        parse_rtcp(data)


@pytest.mark.parametrize(
    ("second_octet", "expected"),
    [(0x00, False), (0x08, False), (0xE0, False), (0xBF, False), (0xC8, True), (0xDF, True)],
)
def test_is_rtcp_uses_rfc5761_ranges(second_octet: int, *, expected: bool) -> None:
    assert is_rtcp(bytes([0x80, second_octet])) is expected


def test_is_rtcp_rejects_one_octet() -> None:
    with pytest.raises(RtpParseError, match=r"^datagram too short for RTP or RTCP$"):
        is_rtcp(b"\x80")


def test_parse_telephone_event_fields_and_symbol() -> None:
    event = parse_telephone_event(bytes([11, 0x80 | 10, 0x03, 0x20]))
    assert event == TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.symbol == "#"
    assert TelephoneEvent(event=16, end=False, volume=0, duration=0).symbol is None


@pytest.mark.parametrize("length", range(4))
def test_truncated_telephone_event_raises(length: int) -> None:
    with pytest.raises(RtpParseError, match=r"^telephone-event payload shorter than 4 octets$"):
        parse_telephone_event(bytes(length))


@settings(deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_value_or_rtp_parse_error(data: bytes) -> None:
    for parse in (parse_rtp, parse_rtcp, parse_telephone_event, is_rtcp):
        with contextlib.suppress(RtpParseError):
            parse(data)


@settings(deadline=None)
@given(st.integers(0, len(SR + SDES + BYE)), st.integers(0, 255), st.integers(0, 255))
def test_mutated_compound_rtcp_gives_a_value_or_rtp_parse_error(
    index: int, value: int, cut: int
) -> None:
    data = bytearray(SR + SDES + BYE)
    if index < len(data):
        data[index] = value
    with contextlib.suppress(RtpParseError):
        parse_rtcp(bytes(data[: len(data) - cut]))
