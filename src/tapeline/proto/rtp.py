"""RTP and RTCP packets, RTP/RTCP demultiplexing and RFC 4733 telephone-events.

Implements:

* RFC 3550 §5.1 the RTP fixed header, CSRC list, §5.3.1 header extension and padding;
* RFC 3550 §6.4.1 Sender Report, §6.4.2 Receiver Report, §6.5 SDES, §6.6 BYE, in §6.1 compound
  packets (other RTCP types pass through as `RtcpUnknown`);
* RFC 5761 §4 telling RTP from RTCP on one port (second octet 192-223, i.e. PT 64-95 with M);
* RFC 4733 §2.3 the telephone-event payload.

Strategy: parsing is pure and total. Each header is one named `struct.Struct` that reads like the
RFC figure; every length is checked before it is used, so a short or lying datagram raises
`RtpParseError` and never `IndexError` or `struct.error`. Unknown payload types and RTCP packet
types are values, not errors: they must survive to the caller, which decides what to drop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tapeline.proto.errors import RtpParseError

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")  # V P X CC | M PT | sequence | timestamp | SSRC
RTP_HEADER_LENGTH = RTP_HEADER.size
CSRC = struct.Struct("!I")
EXTENSION_HEADER = struct.Struct("!HH")  # defined by profile | length in 32-bit words

RTCP_HEADER = struct.Struct("!BBH")  # V P RC | PT | length in 32-bit words minus one
RTCP_SSRC = struct.Struct("!I")
# RFC 3550 §6.4.1: NTP timestamp (2 words), RTP timestamp, sender's packet and octet counts.
SENDER_INFO = struct.Struct("!IIIII")
# RFC 3550 §6.4.1: SSRC_n, fraction lost + cumulative lost (24 bits, signed), extended highest
# sequence number, interarrival jitter, last SR (LSR), delay since last SR (DLSR).
REPORT_BLOCK = struct.Struct("!IIIIII")
TELEPHONE_EVENT = struct.Struct("!BBH")  # event | E R volume | duration

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_END = 0
SDES_CNAME = 1

# RFC 5761 §4: RTCP packet types 192-223 would collide with RTP PT 64-95 with the marker set.
RTCP_MUX_FIRST = 192
RTCP_MUX_LAST = 223

PAYLOAD_TYPE_COMFORT_NOISE = 13  # RFC 3551 §6, RFC 3389
_VERSION_SHIFT = 6
_PADDING_BIT = 0x20
_EXTENSION_BIT = 0x10
_CSRC_COUNT_MASK = 0x0F
_MARKER_BIT = 0x80
_PAYLOAD_TYPE_MASK = 0x7F
_COUNT_MASK = 0x1F
_EVENT_END_BIT = 0x80
_VOLUME_MASK = 0x3F
_CUMULATIVE_LOST_MASK = 0xFFFFFF
_CUMULATIVE_LOST_SIGN = 0x800000
_FRACTION_SHIFT = 24
_WORD = 4

# RFC 4733 §3.2: events 0-9 are the digits, then *, #, A-D, flash.
DTMF_SYMBOLS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1); `payload` excludes padding and the header extension."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_length: int = 0
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """A reception report block (RFC 3550 §6.4.1) about source `ssrc`."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpSenderReport:
    """RFC 3550 §6.4.1: maps the sender's NTP wall clock to its RTP timestamp."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format, seconds since 1900 in the high 32 bits
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpReceiverReport:
    """RFC 3550 §6.4.2."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """RFC 3550 §6.5: the items (type, value) one source describes itself with."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> bytes | None:
        """The CNAME item (§6.5.1), which ties an SSRC's segments together, if present."""
        return next((value for kind, value in self.items if kind == SDES_CNAME), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpSourceDescription:
    """RFC 3550 §6.5."""

    chunks: tuple[SdesChunk, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpBye:
    """RFC 3550 §6.6."""

    sources: tuple[int, ...] = ()
    reason: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpUnknown:
    """An RTCP packet type we do not interpret (APP, feedback, XR), kept as received."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpSourceDescription | RtcpBye | RtcpUnknown


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """RFC 4733 §2.3 payload: `duration` is in RTP timestamp units since the event's timestamp."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def symbol(self) -> str | None:
        """The DTMF key for events 0-15 (RFC 4733 §3.2), else None."""
        return DTMF_SYMBOLS[self.event] if self.event < len(DTMF_SYMBOLS) else None


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 §4).

    Args:
        data: one UDP payload.

    Returns:
        True when the second octet is an RTCP packet type (192-223).

    Raises:
        RtpParseError: fewer than two octets.
    """
    if len(data) < RTCP_HEADER.size // 2:
        raise RtpParseError("datagram too short for RTP or RTCP")
    return RTCP_MUX_FIRST <= data[1] <= RTCP_MUX_LAST


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (RFC 3550 §5.1, §5.3.1).

    Args:
        data: one UDP payload (after SRTP unprotect, if any).

    Returns:
        The packet.

    Raises:
        RtpParseError: not version 2, or a CSRC list, extension or padding past the end.
    """
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpParseError("RTP packet shorter than the fixed header")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if first >> _VERSION_SHIFT != RTP_VERSION:
        raise RtpParseError("RTP version is not 2")
    offset = RTP_HEADER_LENGTH
    csrc_count = first & _CSRC_COUNT_MASK
    end_of_csrc = offset + csrc_count * CSRC.size
    if end_of_csrc > len(data):
        raise RtpParseError("RTP CSRC list runs past the end of the packet")
    csrc = tuple(CSRC.unpack_from(data, offset + i * CSRC.size)[0] for i in range(csrc_count))
    offset = end_of_csrc
    extension_profile: int | None = None
    extension = b""
    if first & _EXTENSION_BIT:
        if offset + EXTENSION_HEADER.size > len(data):
            raise RtpParseError("RTP header extension runs past the end of the packet")
        extension_profile, words = EXTENSION_HEADER.unpack_from(data, offset)
        offset += EXTENSION_HEADER.size
        if offset + words * _WORD > len(data):
            raise RtpParseError("RTP header extension runs past the end of the packet")
        extension = data[offset : offset + words * _WORD]
        offset += words * _WORD
    end = len(data)
    padding_length = 0
    if first & _PADDING_BIT:
        padding_length = data[-1] if end > offset else 0
        # §5.1: the last octet counts itself, so zero or more than the payload is malformed.
        if padding_length == 0 or offset + padding_length > end:
            raise RtpParseError("RTP padding length is invalid")
        end -= padding_length
    return RtpPacket(
        marker=bool(second & _MARKER_BIT),
        payload_type=second & _PAYLOAD_TYPE_MASK,
        sequence_number=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrc=csrc,
        extension_profile=extension_profile,
        extension=extension,
        padding_length=padding_length,
        payload=data[offset:end],
    )


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse an RFC 4733 §2.3 telephone-event payload (the first event of the payload).

    Args:
        payload: the RTP payload of a telephone-event packet.

    Returns:
        The event.

    Raises:
        RtpParseError: fewer than four octets.
    """
    if len(payload) < TELEPHONE_EVENT.size:
        raise RtpParseError("telephone-event payload shorter than 4 octets")
    event, flags, duration = TELEPHONE_EVENT.unpack_from(payload)
    return TelephoneEvent(
        event=event,
        end=bool(flags & _EVENT_END_BIT),
        volume=flags & _VOLUME_MASK,
        duration=duration,
    )


def parse_rtcp(data: bytes) -> tuple[RtcpPacket, ...]:
    """Parse a compound RTCP packet (RFC 3550 §6.1).

    Args:
        data: one UDP payload (after SRTCP unprotect, if any).

    Returns:
        The packets in order.

    Raises:
        RtpParseError: empty, not version 2, or any length past the end of the datagram.
    """
    if not data:
        raise RtpParseError("RTCP datagram is empty")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if offset + RTCP_HEADER.size > len(data):
            raise RtpParseError("RTCP header truncated")
        first, packet_type, words = RTCP_HEADER.unpack_from(data, offset)
        if first >> _VERSION_SHIFT != RTP_VERSION:
            raise RtpParseError("RTCP version is not 2")
        end = offset + (words + 1) * _WORD
        if end > len(data):
            raise RtpParseError("RTCP packet length runs past the end of the datagram")
        body = data[offset + RTCP_HEADER.size : end]
        if first & _PADDING_BIT:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtpParseError("RTCP padding length is invalid")
            body = body[: -body[-1]]
        packets.append(_parse_rtcp_body(packet_type, first & _COUNT_MASK, body))
        offset = end
    return tuple(packets)


def _parse_rtcp_body(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < RTCP_SSRC.size + SENDER_INFO.size:
            raise RtpParseError("RTCP SR shorter than its sender info")
        (ssrc,) = RTCP_SSRC.unpack_from(body)
        ntp_high, ntp_low, rtp_ts, packets, octets = SENDER_INFO.unpack_from(body, RTCP_SSRC.size)
        return RtcpSenderReport(
            ssrc=ssrc,
            ntp_timestamp=ntp_high << 32 | ntp_low,
            rtp_timestamp=rtp_ts,
            packet_count=packets,
            octet_count=octets,
            reports=_report_blocks(body, RTCP_SSRC.size + SENDER_INFO.size, count),
        )
    if packet_type == RTCP_RR:
        if len(body) < RTCP_SSRC.size:
            raise RtpParseError("RTCP RR shorter than its SSRC")
        (ssrc,) = RTCP_SSRC.unpack_from(body)
        return RtcpReceiverReport(ssrc=ssrc, reports=_report_blocks(body, RTCP_SSRC.size, count))
    if packet_type == RTCP_SDES:
        return _parse_sdes(body, count)
    if packet_type == RTCP_BYE:
        return _parse_bye(body, count)
    return RtcpUnknown(packet_type=packet_type, count=count, body=body)


def _report_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * REPORT_BLOCK.size > len(body):
        raise RtpParseError("RTCP report blocks run past the end of the packet")
    blocks = []
    for index in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = REPORT_BLOCK.unpack_from(
            body, offset + index * REPORT_BLOCK.size
        )
        cumulative = lost & _CUMULATIVE_LOST_MASK
        if cumulative & _CUMULATIVE_LOST_SIGN:  # 24-bit two's complement: duplicates exceed loss
            cumulative -= _CUMULATIVE_LOST_SIGN << 1
        blocks.append(
            ReportBlock(
                ssrc=ssrc,
                fraction_lost=lost >> _FRACTION_SHIFT,
                cumulative_lost=cumulative,
                highest_sequence=highest,
                jitter=jitter,
                last_sr=lsr,
                delay_since_last_sr=dlsr,
            )
        )
    return tuple(blocks)


def _parse_sdes(body: bytes, count: int) -> RtcpSourceDescription:
    chunks = []
    offset = 0
    for _ in range(count):
        if offset + RTCP_SSRC.size > len(body):
            raise RtpParseError("RTCP SDES chunk truncated")
        (ssrc,) = RTCP_SSRC.unpack_from(body, offset)
        offset += RTCP_SSRC.size
        items = []
        while True:
            if offset >= len(body):
                raise RtpParseError("RTCP SDES item list not terminated")
            kind = body[offset]
            if kind == SDES_END:
                # §6.5: the list ends with a null octet, then padding to the next 32-bit boundary.
                offset = (offset // _WORD + 1) * _WORD
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtpParseError("RTCP SDES item runs past the end of the packet")
            length = body[offset + 1]
            items.append((kind, body[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    return RtcpSourceDescription(chunks=tuple(chunks))


def _parse_bye(body: bytes, count: int) -> RtcpBye:
    end = count * RTCP_SSRC.size
    if end > len(body):
        raise RtpParseError("RTCP BYE source list runs past the end of the packet")
    sources = tuple(RTCP_SSRC.unpack_from(body, i * RTCP_SSRC.size)[0] for i in range(count))
    reason = b""
    if end < len(body):
        length = body[end]
        if end + 1 + length > len(body):
            raise RtpParseError("RTCP BYE reason runs past the end of the packet")
        reason = body[end + 1 : end + 1 + length]
    return RtcpBye(sources=sources, reason=reason)
