"""Link-layer decoding: from a captured frame to an IP packet's bytes.

Covers IEEE 802.3 Ethernet II, IEEE 802.1Q VLAN tags and 802.1ad QinQ (TPIDs 0x8100, 0x88A8 and
the pre-standard 0x9100), Linux cooked capture SLL v1 and v2 (tcpdump.org/linktypes LINKTYPE 113
and 276), raw IP (LINKTYPE 101, 228, 229), and the GRE (RFC 2784, RFC 2890 key/sequence) carriage
of Cisco ERSPAN type I, II (0x88BE) and III (0x22EB) (draft-foschiano-erspan-03 §4.1-§4.3).

Strategy: `decode_link` stops at the network layer and reports the EtherType; the caller decides
what is IP. ERSPAN sits above IP, so `decode_gre` returns the mirrored inner Ethernet frame and the
caller feeds it back to `decode_link` (with a depth limit of its own).
"""

import struct
from dataclasses import dataclass
from typing import Final

from tapeline.proto.errors import ParseError

LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_VLAN: Final = 0x8100
ETHERTYPE_QINQ: Final = 0x88A8
ETHERTYPE_QINQ_OLD: Final = 0x9100
VLAN_TPIDS: Final = frozenset({ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD})
ETHERTYPE_ERSPAN_II: Final = 0x88BE
ETHERTYPE_ERSPAN_III: Final = 0x22EB
MAX_VLAN_TAGS: Final = 4
VLAN_ID_MASK: Final = 0x0FFF
IP_VERSION_4: Final = 4
IP_VERSION_6: Final = 6
_RAW_VERSIONS: Final = {IP_VERSION_4: ETHERTYPE_IPV4, IP_VERSION_6: ETHERTYPE_IPV6}
_RAW_LINKTYPES: Final = {LINKTYPE_IPV4: IP_VERSION_4, LINKTYPE_IPV6: IP_VERSION_6}

# IEEE 802.3 Ethernet II: destination, source, EtherType.
_ETHERNET = struct.Struct("!6s6sH")
# IEEE 802.1Q tag after the TPID: TCI (PCP, DEI, VID), inner EtherType.
_VLAN_TAG = struct.Struct("!HH")
# SLL v1: packet type, ARPHRD, address length, address (8), protocol.
_SLL = struct.Struct("!HHH8sH")
# SLL v2: protocol, reserved, interface index, ARPHRD, packet type, address length, address (8).
_SLL2 = struct.Struct("!HHIHBB8s")
# RFC 2784 §2.1 GRE: flags and version, protocol type.
_GRE = struct.Struct("!HH")
GRE_FLAG_CHECKSUM: Final = 0x8000
GRE_FLAG_KEY: Final = 0x2000
GRE_FLAG_SEQUENCE: Final = 0x1000
GRE_VERSION_MASK: Final = 0x0007
GRE_OPTION_LENGTH: Final = 4
# ERSPAN type II header (8 bytes) and type III header (12 bytes, + 8 with the O flag).
ERSPAN_II_LENGTH: Final = 8
ERSPAN_III_LENGTH: Final = 12
ERSPAN_III_PLATFORM_LENGTH: Final = 8
_ERSPAN_III = struct.Struct("!III")
ERSPAN_III_O_FLAG: Final = 0x1


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkPayload:
    """The network-layer content of one frame.

    Attributes:
        ethertype: The EtherType of `payload` (0x0800 IPv4, 0x86DD IPv6, anything else opaque).
        payload: The bytes after the link-layer headers.
        vlans: VLAN IDs from outermost to innermost.
    """

    ethertype: int
    payload: bytes
    vlans: tuple[int, ...] = ()


def decode_link(linktype: int, frame: bytes) -> LinkPayload:
    """Strip the link-layer headers of `frame`.

    Args:
        linktype: The capture's LINKTYPE_* value.
        frame: The captured bytes.

    Returns:
        The EtherType and the bytes that follow the link layer.

    Raises:
        ParseError: Unsupported link type or a truncated header.
    """
    if linktype == LINKTYPE_ETHERNET:
        return decode_ethernet(frame)
    if linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        return _decode_sll(linktype, frame)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _decode_raw(linktype, frame)
    raise ParseError(f"unsupported link type {linktype}")


def _decode_sll(linktype: int, frame: bytes) -> LinkPayload:
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < _SLL.size:
            raise ParseError("truncated Linux cooked (SLL) header")
        return _tagged(_SLL.unpack_from(frame)[4], frame, _SLL.size)
    if len(frame) < _SLL2.size:
        raise ParseError("truncated Linux cooked (SLL2) header")
    return _tagged(_SLL2.unpack_from(frame)[0], frame, _SLL2.size)


def _decode_raw(linktype: int, frame: bytes) -> LinkPayload:
    # LINKTYPE_RAW says only "IP": the version nibble decides, as for 228 and 229 it must agree.
    if not frame:
        raise ParseError("empty raw IP frame")
    version = frame[0] >> 4
    ethertype = _RAW_VERSIONS.get(version)
    if ethertype is None or (linktype != LINKTYPE_RAW and _RAW_LINKTYPES[linktype] != version):
        raise ParseError(f"raw IP frame with version {version}")
    return LinkPayload(ethertype=ethertype, payload=frame)


def decode_ethernet(frame: bytes) -> LinkPayload:
    """Strip an Ethernet II header and any 802.1Q/802.1ad tags.

    Raises:
        ParseError: Truncated header or more than `MAX_VLAN_TAGS` tags.
    """
    if len(frame) < _ETHERNET.size:
        raise ParseError("truncated Ethernet header")
    ethertype = _ETHERNET.unpack_from(frame)[2]
    return _tagged(ethertype, frame, _ETHERNET.size)


def _tagged(ethertype: int, frame: bytes, offset: int) -> LinkPayload:
    vlans: list[int] = []
    while ethertype in VLAN_TPIDS:
        if len(vlans) == MAX_VLAN_TAGS:
            raise ParseError("too many VLAN tags")
        if len(frame) < offset + _VLAN_TAG.size:
            raise ParseError("truncated VLAN tag")
        tci, ethertype = _VLAN_TAG.unpack_from(frame, offset)
        vlans.append(tci & VLAN_ID_MASK)
        offset += _VLAN_TAG.size
    return LinkPayload(ethertype=ethertype, payload=frame[offset:], vlans=tuple(vlans))


def decode_gre(packet: bytes) -> bytes | None:
    """Return the mirrored Ethernet frame inside a GRE packet carrying ERSPAN.

    Args:
        packet: The GRE header and payload (the IP payload of protocol 47).

    Returns:
        The inner Ethernet frame, or None when the GRE payload is not ERSPAN.

    Raises:
        ParseError: A truncated GRE or ERSPAN header, or a GRE version other than 0.
    """
    if len(packet) < _GRE.size:
        raise ParseError("truncated GRE header")
    flags, protocol = _GRE.unpack_from(packet)
    if flags & GRE_VERSION_MASK:
        raise ParseError(f"unsupported GRE version {flags & GRE_VERSION_MASK}")
    offset = _GRE.size
    for flag in (GRE_FLAG_CHECKSUM, GRE_FLAG_KEY, GRE_FLAG_SEQUENCE):
        if flags & flag:
            offset += GRE_OPTION_LENGTH
    if len(packet) < offset:
        raise ParseError("truncated GRE options")
    return _strip_erspan(packet, offset, flags, protocol)


def _strip_erspan(packet: bytes, offset: int, flags: int, protocol: int) -> bytes | None:
    if protocol == ETHERTYPE_ERSPAN_II:
        # Type I has no ERSPAN header and no GRE sequence number; type II sets the S bit.
        if flags & GRE_FLAG_SEQUENCE:
            offset += ERSPAN_II_LENGTH
    elif protocol == ETHERTYPE_ERSPAN_III:
        if len(packet) < offset + _ERSPAN_III.size:
            raise ParseError("truncated ERSPAN type III header")
        word3 = _ERSPAN_III.unpack_from(packet, offset)[2]
        offset += ERSPAN_III_LENGTH
        if word3 & ERSPAN_III_O_FLAG:
            offset += ERSPAN_III_PLATFORM_LENGTH
    else:
        return None
    if len(packet) < offset:
        raise ParseError("truncated ERSPAN header")
    return packet[offset:]
