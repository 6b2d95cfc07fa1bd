import struct
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapeline.proto.net.frames import decode_link
from tapeline.proto.net.ip import parse_ipv4, parse_ipv6, parse_udp
from tapeline.proto.net.synthetic import build_udp_frame, internet_checksum

PAYLOAD = b"OPTIONS sip:srs@example.com SIP/2.0\r\n\r\n"


def test_ipv4_frame_decodes_back_with_valid_checksums() -> None:
    frame = build_udp_frame("10.0.0.1", ip_address("10.0.0.2"), 5060, 5080, PAYLOAD)
    link = decode_link(1, frame)
    assert link.ethertype == 0x0800
    assert internet_checksum(link.payload[:20]) == 0
    packet = parse_ipv4(link.payload)
    assert (str(packet.src), str(packet.dst), packet.protocol) == ("10.0.0.1", "10.0.0.2", 17)
    udp = parse_udp(packet.payload)
    assert (udp.sport, udp.dport, udp.payload) == (5060, 5080, PAYLOAD)
    pseudo = (
        packet.src.packed + packet.dst.packed + bytes([0, 17]) + len(packet.payload).to_bytes(2)
    )
    assert internet_checksum(pseudo + packet.payload) == 0


def test_ipv6_frame_decodes_back_with_valid_checksum() -> None:
    frame = build_udp_frame("2001:db8::1", "2001:db8::2", 40000, 5060, PAYLOAD + b"!")
    packet = parse_ipv6(decode_link(1, frame).payload)
    assert parse_udp(packet.payload).payload == PAYLOAD + b"!"
    pseudo = packet.src.packed + packet.dst.packed + len(packet.payload).to_bytes(4) + b"\0\0\0\x11"
    assert internet_checksum(pseudo + packet.payload) == 0


def test_checksum_of_odd_length_and_zero() -> None:
    assert internet_checksum(b"\xff") == 0x00FF
    assert internet_checksum(b"") == 0xFFFF


@pytest.mark.parametrize(
    ("src", "dst", "sport", "size", "message"),
    [
        ("10.0.0.1", "2001:db8::1", 1, 0, "same address family"),
        ("10.0.0.1", "10.0.0.2", 70000, 0, "UDP port out of range"),
        ("10.0.0.1", "10.0.0.2", 1, 65508, "too large for one IPv4 packet"),
        ("::1", "::2", 1, 65528, "too large for one IPv6 packet"),
    ],
)
def test_rejections(src: str, dst: str, sport: int, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_udp_frame(src, dst, sport, 5060, b"\0" * size)


def test_largest_ipv4_payload_fits() -> None:
    assert len(build_udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"\0" * 65507)) == 14 + 65535


def _word_by_word(data: bytes) -> int:
    """RFC 1071 as written: add 16-bit words, fold the carries, complement."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=1500) | st.lists(st.sampled_from([b"\0", b"\xff"])).map(b"".join))
def test_checksum_equals_the_word_by_word_sum(data: bytes) -> None:
    assert internet_checksum(data) == _word_by_word(data)


def test_addresses_given_as_objects_or_strings_build_the_same_frame() -> None:
    as_text = build_udp_frame("192.0.2.1", "192.0.2.2", 4000, 6000, b"x" * 160)
    as_objects = build_udp_frame(ip_address("192.0.2.1"), ip_address("192.0.2.2"), 4000, 6000,
                                 b"x" * 160)  # fmt: skip
    assert as_objects == as_text
