import contextlib
import struct
from collections.abc import Callable
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import ParseError
from tapeline.proto.net.ip import (
    Fragment,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
    skip_ipv6_extensions,
)
from tests.unit.proto.net.builders import ipv4, ipv6, ipv6_fragment, tcp, udp


def test_ipv4_cuts_link_padding() -> None:
    packet = parse_ipv4(ipv4(udp(b"hi")) + b"\0" * 10)
    assert (packet.version, packet.src, packet.dst, packet.protocol) == (
        4,
        ip_address("192.0.2.1"),
        ip_address("192.0.2.2"),
        17,
    )
    assert packet.payload == udp(b"hi")
    assert packet.fragment is None


def test_ipv4_fragment_fields() -> None:
    packet = parse_ipv4(ipv4(b"x" * 8, ident=99, offset=16, more=True))
    assert packet.fragment == Fragment(ident=99, offset=16, more=True)
    assert parse_ipv4(ipv4(b"x", offset=8)).fragment == Fragment(ident=1, offset=8, more=False)


def test_ipv4_options_are_skipped() -> None:
    head = bytearray(ipv4(b"pay"))
    head[0] = 0x46
    raw = bytes(head[:20]) + b"\x01\x01\x01\x00" + b"pay"
    raw = raw[:2] + struct.pack("!H", len(raw)) + raw[4:]
    assert parse_ipv4(raw).payload == b"pay"


def test_ipv6_walks_extension_headers() -> None:
    hop = struct.pack("!BB6s", 60, 0, b"\0" * 6)
    dst_opts = struct.pack("!BB6s", 51, 0, b"\0" * 6)
    ah = struct.pack("!BB10s", 17, 1, b"\0" * 10)
    packet = parse_ipv6(ipv6(hop + dst_opts + ah + udp(b"v6"), next_header=0))
    assert (packet.protocol, packet.payload, packet.fragment) == (17, udp(b"v6"), None)


def test_ipv6_fragment_header() -> None:
    packet = parse_ipv6(ipv6(ipv6_fragment(b"x" * 8, offset=8, more=True), next_header=44))
    assert packet.fragment == Fragment(ident=7, offset=8, more=True)
    assert (packet.protocol, packet.payload) == (17, b"x" * 8)


def test_ipv6_atomic_fragment_is_not_a_fragment() -> None:
    packet = parse_ipv6(ipv6(ipv6_fragment(udp(b"a")), next_header=44))
    assert (packet.fragment, packet.protocol, packet.payload) == (None, 17, udp(b"a"))


def test_skip_extensions_rejects_nested_fragment() -> None:
    with pytest.raises(ParseError, match="nested IPv6 fragment header"):
        skip_ipv6_extensions(44, ipv6_fragment(b"x" * 8, more=True))


def test_truncated_fragment_header() -> None:
    with pytest.raises(ParseError, match="truncated IPv6 fragment header"):
        skip_ipv6_extensions(44, b"\0" * 7)


def test_too_many_extension_headers() -> None:
    with pytest.raises(ParseError, match="too many IPv6 extension headers"):
        skip_ipv6_extensions(60, struct.pack("!BB6s", 60, 0, b"") * 17)


def test_udp_and_tcp() -> None:
    assert parse_udp(udp(b"abc", 1, 2) + b"pad").payload == b"abc"
    segment = parse_tcp(tcp(b"data", seq=123, flags=0x11))
    assert (segment.seq, segment.flags, segment.payload, segment.dport) == (
        123,
        0x11,
        b"data",
        40000,
    )


@pytest.mark.parametrize(
    ("parser", "data"),
    [
        (parse_ipv4, ipv4(udp(b"payload"))),
        (parse_ipv6, ipv6(struct.pack("!BB6s", 17, 0, b"") + udp(b"p"), next_header=60)),
        (parse_ipv6, ipv6(ipv6_fragment(b"x" * 8, more=True), next_header=44)),
        (parse_udp, udp(b"payload")),
        (parse_tcp, tcp(b"", seq=1)),
    ],
)
def test_every_truncated_prefix_raises_parse_error(
    parser: Callable[[bytes], object], data: bytes
) -> None:
    parser(data)
    for cut in range(len(data)):
        with pytest.raises(ParseError):
            parser(data[:cut])


@pytest.mark.parametrize(
    ("parser", "data", "message"),
    [
        (parse_ipv4, ipv6(b""), "IP version 6 in an IPv4 header"),
        (parse_ipv4, b"\x44" + ipv4(b"")[1:], "IPv4 header length below 20"),
        (parse_ipv4, ipv4(b"")[:2] + b"\0\x10" + ipv4(b"")[4:], "total length below header"),
        (parse_ipv6, ipv4(b"x" * 40), "IP version 4 in an IPv6 header"),
        (parse_ipv6, ipv6(b"")[:4] + b"\0\0" + ipv6(b"")[6:], "jumbograms"),
        (parse_udp, struct.pack("!HHHH", 1, 2, 7, 0), "UDP length below 8"),
        (parse_tcp, struct.pack("!HHIIHHHH", 1, 2, 0, 0, 4 << 12, 0, 0, 0), "offset below 5"),
        (
            parse_tcp,
            struct.pack("!HHIIHHHH", 1, 2, 0, 0, 6 << 12, 0, 0, 0),
            "truncated TCP options",
        ),
    ],
)
def test_bad_headers(parser: Callable[[bytes], object], data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parser(data)


@settings(deadline=None)
@given(st.binary(max_size=128))
def test_arbitrary_bytes_give_value_or_parse_error(data: bytes) -> None:
    for parser in (parse_ipv4, parse_ipv6, parse_udp, parse_tcp):
        with contextlib.suppress(ParseError):
            parser(data)
    with contextlib.suppress(ParseError):
        skip_ipv6_extensions(0, data)
