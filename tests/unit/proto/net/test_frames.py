import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import ParseError
from tapeline.proto.net.frames import LinkPayload, decode_gre, decode_link
from tests.unit.proto.net.builders import ether, ipv4, ipv6, udp

IP4 = ipv4(udp(b"hello"))
IP6 = ipv6(udp(b"hello"))


def test_ethernet_ii() -> None:
    assert decode_link(1, ether(0x0800, IP4)) == LinkPayload(ethertype=0x0800, payload=IP4)


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8, 0x9100])
def test_vlan_and_qinq(tpid: int) -> None:
    frame = ether(0x86DD, IP6, vlans=(100, 0x2000 | 200), tpid=tpid)
    assert decode_link(1, frame) == LinkPayload(ethertype=0x86DD, payload=IP6, vlans=(100, 200))


def test_too_many_vlan_tags() -> None:
    with pytest.raises(ParseError, match="too many VLAN tags"):
        decode_link(1, ether(0x0800, IP4, vlans=(1, 2, 3, 4, 5)))


def test_linux_sll() -> None:
    frame = struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + IP4
    assert decode_link(113, frame) == LinkPayload(ethertype=0x0800, payload=IP4)


def test_linux_sll2_with_vlan() -> None:
    frame = struct.pack("!HHIHBB8s", 0x8100, 0, 3, 1, 0, 6, b"\0" * 8) + struct.pack(
        "!HH", 42, 0x0800
    )
    assert decode_link(276, frame + IP4) == LinkPayload(ethertype=0x0800, payload=IP4, vlans=(42,))


@pytest.mark.parametrize(
    ("linktype", "packet", "ethertype"),
    [(101, IP4, 0x0800), (101, IP6, 0x86DD), (228, IP4, 0x0800), (229, IP6, 0x86DD)],
)
def test_raw_ip(linktype: int, packet: bytes, ethertype: int) -> None:
    assert decode_link(linktype, packet) == LinkPayload(ethertype=ethertype, payload=packet)


@pytest.mark.parametrize(
    ("linktype", "frame", "message"),
    [
        (101, b"", "empty raw IP frame"),
        (101, b"\x50", "raw IP frame with version 5"),
        (228, IP6, "raw IP frame with version 6"),
        (147, b"x", "unsupported link type 147"),
        (1, b"\0" * 13, "truncated Ethernet header"),
        (1, ether(0x8100, b"\0"), "truncated VLAN tag"),
        (113, b"\0" * 15, r"truncated Linux cooked \(SLL\) header"),
        (276, b"\0" * 19, r"truncated Linux cooked \(SLL2\) header"),
    ],
)
def test_bad_frames(linktype: int, frame: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        decode_link(linktype, frame)


INNER = ether(0x0800, IP4)


def test_erspan_type_ii() -> None:
    gre = struct.pack("!HHI", 0x1000, 0x88BE, 7) + b"\x10\x01\x00\x01\x00\x00\x00\x00" + INNER
    assert decode_gre(gre) == INNER


def test_erspan_type_i_has_no_header() -> None:
    assert decode_gre(struct.pack("!HH", 0, 0x88BE) + INNER) == INNER


@pytest.mark.parametrize(("o_flag", "extra"), [(0, b""), (1, b"\0" * 8)])
def test_erspan_type_iii(o_flag: int, extra: bytes) -> None:
    header = struct.pack("!III", 0x20000001, 0, o_flag)
    assert decode_gre(struct.pack("!HHI", 0x1000, 0x22EB, 1) + header + extra + INNER) == INNER


def test_gre_with_checksum_and_key_but_other_payload() -> None:
    assert decode_gre(struct.pack("!HHII", 0xA000, 0x0800, 0, 5) + IP4) is None


@pytest.mark.parametrize(
    ("gre", "message"),
    [
        (b"\0\0\x88", "truncated GRE header"),
        (struct.pack("!HH", 0x0001, 0x88BE), "unsupported GRE version 1"),
        (struct.pack("!HH", 0x1000, 0x88BE) + b"\0\0", "truncated GRE options"),
        (struct.pack("!HHI", 0x1000, 0x88BE, 0) + b"\0" * 7, "truncated ERSPAN header"),
        (struct.pack("!HH", 0, 0x22EB) + b"\0" * 11, "truncated ERSPAN type III header"),
        (struct.pack("!HHIII", 0, 0x22EB, 0, 0, 1) + b"\0" * 7, "truncated ERSPAN header"),
    ],
)
def test_bad_gre(gre: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        decode_gre(gre)


@settings(deadline=None)
@given(st.sampled_from([1, 101, 113, 228, 229, 276, 0]), st.binary(max_size=64))
def test_arbitrary_frames_give_value_or_parse_error(linktype: int, frame: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_link(linktype, frame)
    with contextlib.suppress(ParseError):
        decode_gre(frame)
