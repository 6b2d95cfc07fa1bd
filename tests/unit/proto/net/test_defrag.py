from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.net.capture import NEED_DATA, Sentinel
from tapeline.proto.net.defrag import (
    DefragEvent,
    Defragmenter,
    DropReason,
    FragmentsDropped,
    Reassembled,
)
from tapeline.proto.net.ip import IPPacket, parse_ipv4, parse_ipv6
from tests.unit.proto.net.builders import ipv4, ipv6, ipv6_fragment, udp

DATAGRAM = udp(bytes(range(256)) * 2 + b"tail")  # 524 bytes


def _fragments(data: bytes, size: int = 64, ident: int = 1) -> list[IPPacket]:
    return [
        parse_ipv4(ipv4(data[i : i + size], ident=ident, offset=i, more=i + size < len(data)))
        for i in range(0, len(data), size)
    ]


def _feed(defrag: Defragmenter, packets: list[IPPacket], now: float = 0.0) -> list[DefragEvent]:
    events: list[DefragEvent] = []
    for packet in packets:
        defrag.receive_fragment(packet, now)
        while not isinstance(event := defrag.next_event(), Sentinel):
            events.append(event)
    return events


def test_unfragmented_passes_through() -> None:
    packet = parse_ipv4(ipv4(DATAGRAM))
    assert _feed(Defragmenter(), [packet]) == [Reassembled(packet=packet)]


def test_in_order() -> None:
    (event,) = _feed(Defragmenter(), _fragments(DATAGRAM))
    assert isinstance(event, Reassembled)
    assert event.packet == parse_ipv4(ipv4(DATAGRAM))


@settings(deadline=None)
@given(st.permutations(_fragments(DATAGRAM, 32)), st.integers(0, 16))
def test_any_order_with_duplicates_reassembles_once(order: list[IPPacket], dup: int) -> None:
    defrag = Defragmenter()
    events = _feed(defrag, [*order[:dup], *order])
    assert [type(e) for e in events] == [Reassembled]
    assert isinstance(events[0], Reassembled)
    assert events[0].packet.payload == DATAGRAM
    assert defrag.bytes_held == 0


def test_agreeing_partial_overlap_is_accepted() -> None:
    frags = _fragments(DATAGRAM, 64)
    overlap = parse_ipv4(ipv4(DATAGRAM[32:96], offset=32, more=True))
    (event,) = _feed(Defragmenter(), [frags[0], overlap, *frags[1:]])
    assert isinstance(event, Reassembled)
    assert event.packet.payload == DATAGRAM


def test_conflicting_overlap_rejects_the_datagram() -> None:
    frags = _fragments(DATAGRAM, 64)
    evil = parse_ipv4(ipv4(b"X" * 64, offset=32, more=True))
    defrag = Defragmenter()
    events = _feed(defrag, [frags[0], evil])
    key = (ip_address("192.0.2.1"), ip_address("192.0.2.2"), 17, 1)
    assert events == [
        FragmentsDropped(key=key, reason=DropReason.OVERLAP, fragments=1, received=64)
    ]
    assert defrag.datagrams_held == 0


def test_missing_fragment_times_out_and_is_reported() -> None:
    frags = _fragments(DATAGRAM)
    defrag = Defragmenter(timeout=30.0)
    assert _feed(defrag, frags[:2] + frags[3:], now=100.0) == []
    assert defrag.get_timer() == 130.0
    defrag.handle_timer(129.9)
    assert defrag.next_event() is NEED_DATA
    defrag.handle_timer(130.0)
    event = defrag.next_event()
    assert isinstance(event, FragmentsDropped)
    assert (event.reason, event.fragments, event.received) == (DropReason.TIMEOUT, 8, 524 - 64)
    assert defrag.get_timer() is None


def test_expiry_also_happens_on_feed() -> None:
    defrag = Defragmenter(timeout=5.0)
    first, *rest = _fragments(DATAGRAM)
    _feed(defrag, [first], now=0.0)
    events = _feed(defrag, rest, now=6.0)
    assert [type(e) for e in events] == [FragmentsDropped]


def test_max_datagrams_evicts_the_oldest() -> None:
    defrag = Defragmenter(max_datagrams=2)
    events = _feed(defrag, [_fragments(DATAGRAM, ident=i)[0] for i in range(3)])
    assert [(e.key[3], e.reason) for e in events if isinstance(e, FragmentsDropped)] == [
        (0, DropReason.EVICTED)
    ]
    assert defrag.datagrams_held == 2


def test_max_bytes_evicts_older_then_rejects_a_datagram_too_big_alone() -> None:
    defrag = Defragmenter(max_bytes=100)
    events = _feed(defrag, [_fragments(DATAGRAM, ident=1)[0], *_fragments(DATAGRAM, ident=2)[:2]])
    assert [(e.key[3], e.reason) for e in events if isinstance(e, FragmentsDropped)] == [
        (1, DropReason.EVICTED),
        (2, DropReason.OVERSIZE),
    ]
    assert defrag.bytes_held == 0


@pytest.mark.parametrize(
    ("packets", "reason"),
    [
        ([ipv4(b"x" * 8, offset=65528, more=True)], DropReason.OVERSIZE),
        ([ipv4(b"x" * 7, more=True)], DropReason.MALFORMED),
        ([ipv4(b"x" * 8, offset=8), ipv4(b"x" * 8, offset=16)], DropReason.MALFORMED),
        ([ipv4(b"x" * 8, offset=8), ipv4(b"x" * 16, offset=8, more=True)], DropReason.MALFORMED),
    ],
)
def test_malformed_and_oversize(packets: list[bytes], reason: DropReason) -> None:
    events = _feed(Defragmenter(), [parse_ipv4(p) for p in packets])
    assert [e.reason for e in events if isinstance(e, FragmentsDropped)] == [reason]


def test_ipv6_reassembly_walks_headers_behind_the_fragment_header() -> None:
    dst_opts = bytes([17, 0]) + b"\0" * 6
    payload = dst_opts + DATAGRAM
    parts = []
    for i in range(0, len(payload), 128):
        more = i + 128 < len(payload)
        fragment = ipv6_fragment(payload[i : i + 128], next_header=60, offset=i, more=more)
        parts.append(parse_ipv6(ipv6(fragment, next_header=44)))
    (event,) = _feed(Defragmenter(), parts[::-1])
    assert isinstance(event, Reassembled)
    assert (event.packet.protocol, event.packet.payload, event.packet.fragment) == (
        17,
        DATAGRAM,
        None,
    )


def test_ipv6_reassembled_garbage_is_dropped_as_malformed() -> None:
    part = parse_ipv6(
        ipv6(ipv6_fragment(b"\x11\x05" + b"\0" * 6, next_header=60, more=True), next_header=44)
    )
    last = parse_ipv6(ipv6(ipv6_fragment(b"\0" * 8, next_header=60, offset=8), next_header=44))
    events = _feed(Defragmenter(), [part, last])
    assert [e.reason for e in events if isinstance(e, FragmentsDropped)] == [DropReason.MALFORMED]


def test_flush_reports_everything_held() -> None:
    defrag = Defragmenter()
    _feed(defrag, _fragments(DATAGRAM)[:1])
    defrag.flush()
    event = defrag.next_event()
    assert isinstance(event, FragmentsDropped)
    assert event.reason is DropReason.END_OF_INPUT
