"""IPv4, IPv6, UDP and TCP header parsing.

RFC 791 §3.1 (IPv4 header, fragmentation fields), RFC 8200 §3 (IPv6 header), §4 (extension
headers: Hop-by-Hop 0, Routing 43, Fragment 44 (§4.5), Destination Options 60), RFC 4302 §2
(AH length in 32-bit words), RFC 6946 (atomic fragments are not fragments), RFC 768 (UDP) and
RFC 9293 §3.1 (TCP header).

Strategy: parsing trusts the header lengths only after checking them against the captured bytes,
so a truncated packet raises `ParseError`. Link-layer padding beyond the IP total length is cut.
Checksums are not verified: mirror ports and capture hosts with checksum offload routinely show
wrong ones, and a recorder must not drop a packet the endpoints accepted.
"""

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, TypeAlias

from tapeline.proto.errors import ParseError

IPAddress: TypeAlias = IPv4Address | IPv6Address

PROTO_HOPOPTS: Final = 0
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ROUTING: Final = 43
PROTO_FRAGMENT: Final = 44
PROTO_GRE: Final = 47
PROTO_AH: Final = 51
PROTO_DSTOPTS: Final = 60
IPV6_EXTENSIONS: Final = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_AH})
MAX_EXTENSION_HEADERS: Final = 16

# RFC 791 §3.1: version/IHL, ToS, total length, identification, flags/fragment offset, TTL,
# protocol, header checksum, source, destination.
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
IPV4_MIN_HEADER: Final = 20
IPV4_FLAG_MF: Final = 0x2000
IPV4_OFFSET_MASK: Final = 0x1FFF
FRAGMENT_UNIT: Final = 8
WORD: Final = 4
# RFC 8200 §3: version/class/flow label, payload length, next header, hop limit, addresses.
_IPV6 = struct.Struct("!IHBB16s16s")
# RFC 8200 §4: next header, header extension length (8-octet units, not counting the first 8).
_EXTENSION = struct.Struct("!BB")
EXTENSION_UNIT: Final = 8
# RFC 8200 §4.5: next header, reserved, fragment offset/res/M, identification.
_FRAGMENT = struct.Struct("!BBHI")
IPV6_FRAG_OFFSET_MASK: Final = 0xFFF8
IPV6_FLAG_M: Final = 0x0001
# RFC 768: source port, destination port, length, checksum.
_UDP = struct.Struct("!HHHH")
# RFC 9293 §3.1: ports, sequence, acknowledgment, data offset/flags, window, checksum, urgent.
_TCP = struct.Struct("!HHIIHHHH")
TCP_MIN_HEADER: Final = 20
TCP_FLAGS_MASK: Final = 0x01FF
TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04


@dataclass(frozen=True, slots=True, kw_only=True)
class Fragment:
    """The fragmentation fields of a fragment (RFC 791 §3.1, RFC 8200 §4.5).

    Attributes:
        ident: The identification shared by all fragments of one datagram.
        offset: Byte offset of this fragment's data in the reassembled payload.
        more: True unless this is the last fragment.
    """

    ident: int
    offset: int
    more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class IPPacket:
    """A parsed IPv4 or IPv6 packet.

    Attributes:
        version: 4 or 6.
        src: Source address.
        dst: Destination address.
        protocol: The upper-layer protocol (IPv6: after the extension headers).
        payload: The upper-layer bytes (for a fragment, this fragment's share of them).
        fragment: Fragmentation fields, or None for an unfragmented packet.
    """

    version: int
    src: IPAddress
    dst: IPAddress
    protocol: int
    payload: bytes
    fragment: Fragment | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpDatagramHeader:
    """A parsed UDP datagram (RFC 768)."""

    sport: int
    dport: int
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpSegment:
    """A parsed TCP segment (RFC 9293 §3.1); `flags` holds the low 9 flag bits."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


def parse_ipv4(data: bytes) -> IPPacket:
    """Parse an IPv4 packet.

    Raises:
        ParseError: Not IPv4, bad lengths, or truncated.
    """
    if len(data) < IPV4_MIN_HEADER:
        raise ParseError("truncated IPv4 header")
    ver_ihl, _, total, ident, frag, _, proto, _, src, dst = _IPV4.unpack_from(data)
    if ver_ihl >> 4 != 4:  # noqa: PLR2004  # the version field of RFC 791
        raise ParseError(f"IP version {ver_ihl >> 4} in an IPv4 header")
    header = (ver_ihl & 0x0F) * WORD
    if header < IPV4_MIN_HEADER:
        raise ParseError("IPv4 header length below 20")
    if total < header:
        raise ParseError("IPv4 total length below header length")
    if total > len(data):
        raise ParseError("truncated IPv4 packet")
    offset = (frag & IPV4_OFFSET_MASK) * FRAGMENT_UNIT
    more = bool(frag & IPV4_FLAG_MF)
    fragment = Fragment(ident=ident, offset=offset, more=more) if more or offset else None
    return IPPacket(
        version=4,
        src=IPv4Address(src),
        dst=IPv4Address(dst),
        protocol=proto,
        payload=data[header:total],
        fragment=fragment,
    )


def parse_ipv6(data: bytes) -> IPPacket:
    """Parse an IPv6 packet and walk its extension headers up to the upper layer or Fragment.

    Raises:
        ParseError: Not IPv6, a jumbogram, bad lengths, or truncated.
    """
    if len(data) < _IPV6.size:
        raise ParseError("truncated IPv6 header")
    vcf, length, next_header, _, src, dst = _IPV6.unpack_from(data)
    if vcf >> 28 != 6:  # noqa: PLR2004  # the version field of RFC 8200
        raise ParseError(f"IP version {vcf >> 28} in an IPv6 header")
    if length == 0:
        raise ParseError("IPv6 jumbograms are not supported")
    if _IPV6.size + length > len(data):
        raise ParseError("truncated IPv6 packet")
    payload = data[_IPV6.size : _IPV6.size + length]
    protocol, payload, fragment = _walk_extensions(next_header, payload)
    return IPPacket(
        version=6,
        src=IPv6Address(src),
        dst=IPv6Address(dst),
        protocol=protocol,
        payload=payload,
        fragment=fragment,
    )


def skip_ipv6_extensions(next_header: int, data: bytes) -> tuple[int, bytes]:
    """Skip extension headers at the start of a reassembled IPv6 payload.

    Returns:
        The upper-layer protocol and its bytes.

    Raises:
        ParseError: A truncated extension header or a Fragment header inside a fragment.
    """
    protocol, payload, fragment = _walk_extensions(next_header, data)
    if fragment is not None:
        raise ParseError("nested IPv6 fragment header")
    return protocol, payload


def _walk_extensions(next_header: int, data: bytes) -> tuple[int, bytes, Fragment | None]:
    offset = 0
    for _ in range(MAX_EXTENSION_HEADERS):
        if next_header == PROTO_FRAGMENT:
            if len(data) < offset + _FRAGMENT.size:
                raise ParseError("truncated IPv6 fragment header")
            inner, _, off_m, ident = _FRAGMENT.unpack_from(data, offset)
            offset += _FRAGMENT.size
            frag_offset = off_m & IPV6_FRAG_OFFSET_MASK
            more = bool(off_m & IPV6_FLAG_M)
            if not frag_offset and not more:  # RFC 6946 atomic fragment
                next_header = inner
                continue
            return inner, data[offset:], Fragment(ident=ident, offset=frag_offset, more=more)
        if next_header not in IPV6_EXTENSIONS:
            return next_header, data[offset:], None
        if len(data) < offset + _EXTENSION.size:
            raise ParseError("truncated IPv6 extension header")
        inner, ext_len = _EXTENSION.unpack_from(data, offset)
        size = (ext_len + 2) * WORD if next_header == PROTO_AH else (ext_len + 1) * EXTENSION_UNIT
        if len(data) < offset + size:
            raise ParseError("truncated IPv6 extension header")
        offset += size
        next_header = inner
    raise ParseError("too many IPv6 extension headers")


def parse_udp(data: bytes) -> UdpDatagramHeader:
    """Parse a UDP datagram; bytes past the UDP length are padding and are cut.

    Raises:
        ParseError: Truncated header, length below 8, or length beyond the data.
    """
    if len(data) < _UDP.size:
        raise ParseError("truncated UDP header")
    sport, dport, length, _ = _UDP.unpack_from(data)
    if length < _UDP.size:
        raise ParseError("UDP length below 8")
    if length > len(data):
        raise ParseError("truncated UDP datagram")
    return UdpDatagramHeader(sport=sport, dport=dport, payload=data[_UDP.size : length])


def parse_tcp(data: bytes) -> TcpSegment:
    """Parse a TCP segment header; options are skipped.

    Raises:
        ParseError: Truncated header or a data offset outside the segment.
    """
    if len(data) < TCP_MIN_HEADER:
        raise ParseError("truncated TCP header")
    sport, dport, seq, ack, off_flags, window, _, _ = _TCP.unpack_from(data)
    header = (off_flags >> 12) * WORD
    if header < TCP_MIN_HEADER:
        raise ParseError("TCP data offset below 5")
    if header > len(data):
        raise ParseError("truncated TCP options")
    return TcpSegment(
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=off_flags & TCP_FLAGS_MASK,
        window=window,
        payload=data[header:],
    )
