"""Packet builders for the proto.net tests (test-only, the wire layouts written out by hand)."""

import struct
from ipaddress import ip_address

ETH_DST = bytes.fromhex("001122334455")
ETH_SRC = bytes.fromhex("66778899aabb")


def ether(ethertype: int, payload: bytes, vlans: tuple[int, ...] = (), tpid: int = 0x8100) -> bytes:
    head = ETH_DST + ETH_SRC
    for vid in vlans:
        head += struct.pack("!HH", tpid, vid)
        tpid = 0x8100
    return head + struct.pack("!H", ethertype) + payload


def ipv4(
    payload: bytes,
    *,
    proto: int = 17,
    src: str = "192.0.2.1",
    dst: str = "192.0.2.2",
    ident: int = 1,
    offset: int = 0,
    more: bool = False,
) -> bytes:
    frag = (offset // 8) | (0x2000 if more else 0)
    addresses = ip_address(src).packed + ip_address(dst).packed
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0)
    return header + addresses + payload


def ipv6(
    payload: bytes,
    *,
    next_header: int = 17,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
) -> bytes:
    addresses = ip_address(src).packed + ip_address(dst).packed
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64) + addresses + payload


def ipv6_fragment(
    payload: bytes, *, next_header: int = 17, ident: int = 7, offset: int = 0, more: bool = False
) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident) + payload


def udp(payload: bytes, sport: int = 5060, dport: int = 5060) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(
    payload: bytes, *, seq: int, flags: int = 0x18, sport: int = 5060, dport: int = 40000
) -> bytes:
    return struct.pack("!HHIIHHHH", sport, dport, seq, 0, (5 << 12) | flags, 65535, 0, 0) + payload
