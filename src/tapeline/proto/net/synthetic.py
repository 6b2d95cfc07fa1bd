"""Synthetic Ethernet/IP/UDP frames around datagrams a listener received.

A SIPREC recorder receives SIP and RTP on ordinary sockets, so it never sees frames. To journal
them as pcapng that Wireshark opens like a capture, each datagram is wrapped in an Ethernet II
header (IEEE 802.3, locally administered addresses), an IPv4 (RFC 791 §3.1, header checksum per
RFC 1071) or IPv6 (RFC 8200 §3) header, and a UDP header (RFC 768) whose checksum covers the
pseudo-header (RFC 768; RFC 8200 §8.1, where it is mandatory).
"""

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

from tapeline.proto.net.frames import ETHERTYPE_IPV4, ETHERTYPE_IPV6
from tapeline.proto.net.ip import PROTO_UDP, IPAddress

SYNTHETIC_SRC_MAC: Final = bytes.fromhex("020000000001")
SYNTHETIC_DST_MAC: Final = bytes.fromhex("020000000002")
DEFAULT_TTL: Final = 64
IPV4_VERSION_IHL: Final = 0x45
IPV4_FLAG_DF: Final = 0x4000
IPV6_VERSION_WORD: Final = 6 << 28
MAX_PORT: Final = 0xFFFF
MAX_IP_LENGTH: Final = 0xFFFF

_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_PSEUDO_V4 = struct.Struct("!4s4sBBH")
_PSEUDO_V6 = struct.Struct("!16s16sIxxxB")
_CHECKSUM_ZERO_AS: Final = 0xFFFF  # RFC 768: a computed zero is sent as all ones


def internet_checksum(data: bytes) -> int:
    """Return the RFC 1071 one's-complement checksum of `data`.

    The one's-complement sum of 16-bit words is the data read as one big-endian number modulo
    0xFFFF (2**16 is 1 modulo 0xFFFF, so every word counts once; RFC 1071 §2(B)), except that
    the sum of anything non-zero is 0xFFFF rather than 0. One C-level conversion instead of a
    word-by-word loop: the live tap journals every packet through here.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def build_udp_frame(
    src: IPAddress | str,
    dst: IPAddress | str,
    sport: int,
    dport: int,
    payload: bytes,
) -> bytes:
    """Wrap a UDP payload in Ethernet II, IPv4 or IPv6, and UDP headers.

    Args:
        src: Source address (IPv4 or IPv6, as an address or a string).
        dst: Destination address, of the same family as `src`.
        sport: Source port.
        dport: Destination port.
        payload: The datagram as the socket delivered it.

    Returns:
        A LINKTYPE_ETHERNET frame.

    Raises:
        ValueError: Mixed address families, a port out of range, or a payload too large
            for one unfragmented IP packet.
    """
    # Addresses from the decoder are already objects: re-parsing them costs more than the frame.
    src_ip = src if isinstance(src, IPv4Address | IPv6Address) else ip_address(src)
    dst_ip = dst if isinstance(dst, IPv4Address | IPv6Address) else ip_address(dst)
    if not (0 <= sport <= MAX_PORT and 0 <= dport <= MAX_PORT):
        raise ValueError("UDP port out of range")
    udp_length = _UDP.size + len(payload)
    if isinstance(src_ip, IPv4Address) and isinstance(dst_ip, IPv4Address):
        if _IPV4.size + udp_length > MAX_IP_LENGTH:
            raise ValueError("payload too large for one IPv4 packet")
        pseudo = _PSEUDO_V4.pack(src_ip.packed, dst_ip.packed, 0, PROTO_UDP, udp_length)
        udp = _udp(pseudo, sport, dport, payload)
        total = _IPV4.size + udp_length
        header = _IPV4.pack(
            IPV4_VERSION_IHL, 0, total, 0, IPV4_FLAG_DF, DEFAULT_TTL, PROTO_UDP, 0,
            src_ip.packed, dst_ip.packed,
        )  # fmt: skip
        checksum = internet_checksum(header)
        header = header[:10] + struct.pack("!H", checksum) + header[12:]
        return _ETHERNET.pack(SYNTHETIC_DST_MAC, SYNTHETIC_SRC_MAC, ETHERTYPE_IPV4) + header + udp
    if isinstance(src_ip, IPv6Address) and isinstance(dst_ip, IPv6Address):
        if udp_length > MAX_IP_LENGTH:
            raise ValueError("payload too large for one IPv6 packet")
        pseudo = _PSEUDO_V6.pack(src_ip.packed, dst_ip.packed, udp_length, PROTO_UDP)
        udp = _udp(pseudo, sport, dport, payload)
        header = _IPV6.pack(
            IPV6_VERSION_WORD, udp_length, PROTO_UDP, DEFAULT_TTL, src_ip.packed, dst_ip.packed
        )
        return _ETHERNET.pack(SYNTHETIC_DST_MAC, SYNTHETIC_SRC_MAC, ETHERTYPE_IPV6) + header + udp
    raise ValueError("src and dst must be of the same address family")


def _udp(pseudo: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = _UDP.size + len(payload)
    checksum = internet_checksum(pseudo + _UDP.pack(sport, dport, length, 0) + payload)
    return _UDP.pack(sport, dport, length, checksum or _CHECKSUM_ZERO_AS) + payload
