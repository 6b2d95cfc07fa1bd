import struct
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.net.capture import PacketRecord, Sentinel
from tapeline.proto.net.decoder import DecoderEvent, PacketDecoder, PacketDropped, UdpDatagram
from tapeline.proto.net.defrag import Defragmenter, DropReason, FragmentsDropped
from tapeline.proto.net.synthetic import build_udp_frame
from tapeline.proto.net.tcp import CloseReason, StreamClosed, StreamData, StreamGap
from tests.unit.proto.net.builders import ether, ipv4, ipv6, ipv6_fragment, tcp, udp

SEC = 1_000_000_000


def _record(frame: bytes, ts_ns: int | None = 5 * SEC, linktype: int = 1) -> PacketRecord:
    return PacketRecord(ts_ns=ts_ns, linktype=linktype, data=frame, orig_len=len(frame))


def _decode(
    records: list[PacketRecord], decoder: PacketDecoder | None = None
) -> list[DecoderEvent]:
    decoder = decoder or PacketDecoder()
    events: list[DecoderEvent] = []
    for record in records:
        decoder.receive_record(record)
        while not isinstance(event := decoder.next_event(), Sentinel):
            events.append(event)
    return events


def test_udp_ipv4_and_ipv6_with_vlan() -> None:
    v6 = ether(0x86DD, ipv6(udp(b"six", 1, 2)), vlans=(10,))
    events = _decode(
        [_record(build_udp_frame("10.0.0.1", "10.0.0.2", 5060, 5062, b"four")), _record(v6)]
    )
    assert events == [
        UdpDatagram(
            ts_ns=5 * SEC, src=ip_address("10.0.0.1"), dst=ip_address("10.0.0.2"),
            sport=5060, dport=5062, payload=b"four",
        ),
        UdpDatagram(
            ts_ns=5 * SEC, src=ip_address("2001:db8::1"), dst=ip_address("2001:db8::2"),
            sport=1, dport=2, payload=b"six", vlans=(10,),
        ),
    ]  # fmt: skip


def test_fragmented_invite_over_udp_is_reassembled() -> None:
    invite = udp(b"INVITE sip:bob@example.com SIP/2.0\r\n" + b"a=x\r\n" * 400)
    frames = [
        _record(
            ether(
                0x0800, ipv4(invite[i : i + 1480], ident=9, offset=i, more=i + 1480 < len(invite))
            )
        )
        for i in range(0, len(invite), 1480)
    ]
    decoder = PacketDecoder()
    (event,) = _decode(frames[::-1], decoder)
    assert isinstance(event, UdpDatagram)
    assert event.payload == invite[8:]
    assert (decoder.counters.fragments, decoder.counters.udp_datagrams) == (2, 1)
    assert event.frame is None  # no one frame carried it: the journal builds one


def test_a_whole_datagram_keeps_the_frame_that_carried_it() -> None:
    frame = ether(0x0800, ipv4(udp(b"rtp", 4000, 6000)), vlans=(7,))
    (event,) = _decode([_record(frame)])
    assert isinstance(event, UdpDatagram)
    assert event.frame == frame
    raw_ip = ipv4(udp(b"rtp", 4000, 6000))
    (event,) = _decode([_record(raw_ip, linktype=101)])  # LINKTYPE_RAW: no Ethernet frame
    assert isinstance(event, UdpDatagram)
    assert event.frame is None


def test_ipv6_fragments_are_reassembled() -> None:
    data = udp(b"v" * 100)
    parts = [
        _record(ether(0x86DD, ipv6(ipv6_fragment(data[:56], more=True), next_header=44))),
        _record(ether(0x86DD, ipv6(ipv6_fragment(data[56:], offset=56), next_header=44))),
    ]
    (event,) = _decode(parts)
    assert isinstance(event, UdpDatagram)
    assert event.payload == b"v" * 100


def test_conflicting_fragments_are_reported_not_guessed() -> None:
    frames = [
        _record(ether(0x0800, ipv4(b"a" * 16, ident=4, more=True))),
        _record(ether(0x0800, ipv4(b"b" * 16, ident=4, offset=8, more=True))),
    ]
    events = _decode(frames)
    assert [e.reason for e in events if isinstance(e, FragmentsDropped)] == [DropReason.OVERLAP]
    assert not [e for e in events if isinstance(e, UdpDatagram)]


def test_tcp_stream_events() -> None:
    frames = [
        _record(ether(0x0800, ipv4(tcp(b"", seq=0, flags=0x02), proto=6))),
        _record(ether(0x0800, ipv4(tcp(b"world", seq=6), proto=6))),
        _record(ether(0x0800, ipv4(tcp(b"hello", seq=1), proto=6))),
        _record(ether(0x0800, ipv4(tcp(b"", seq=11, flags=0x11), proto=6))),
    ]
    events = _decode(frames)
    assert b"".join(e.data for e in events if isinstance(e, StreamData)) == b"helloworld"
    assert isinstance(events[-1], StreamClosed)
    assert events[-1].reason is CloseReason.FIN


def test_erspan_ii_and_iii_are_decapsulated() -> None:
    inner = build_udp_frame("10.1.1.1", "10.1.1.2", 5060, 5060, b"mirrored")
    erspan2 = struct.pack("!HHI", 0x1000, 0x88BE, 1) + b"\0" * 8 + inner
    erspan3 = struct.pack("!HHI", 0x1000, 0x22EB, 1) + b"\0" * 12 + inner
    events = _decode([_record(ether(0x0800, ipv4(gre, proto=47))) for gre in (erspan2, erspan3)])
    assert [e.payload for e in events if isinstance(e, UdpDatagram)] == [b"mirrored"] * 2


def test_bad_frames_become_events_and_counters() -> None:
    decoder = PacketDecoder()
    events = _decode(
        [
            _record(b"\0" * 5),
            _record(ether(0x0806, b"arp")),
            _record(ether(0x0800, ipv4(b"icmp", proto=1))),
            _record(ether(0x0800, ipv4(struct.pack("!HH", 0, 0x0800), proto=47))),
        ],
        decoder,
    )
    assert events == [PacketDropped(ts_ns=5 * SEC, reason="truncated Ethernet header")]
    counters = decoder.counters
    assert (counters.records, counters.malformed, counters.non_ip, counters.other_ip) == (
        4,
        1,
        1,
        2,
    )


def test_record_without_timestamp_takes_the_last_one() -> None:
    frame = build_udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"x")
    events = _decode([_record(frame, ts_ns=7 * SEC), _record(frame, ts_ns=None)])
    assert [e.ts_ns for e in events if isinstance(e, UdpDatagram)] == [7 * SEC, 7 * SEC]


def test_timers_fire_from_capture_time_and_flush() -> None:
    decoder = PacketDecoder(defragmenter=Defragmenter(timeout=2.0))
    lost = _record(ether(0x0800, ipv4(b"x" * 8, ident=3, more=True)), ts_ns=10 * SEC)
    stream = _record(ether(0x0800, ipv4(tcp(b"ab", seq=1, flags=0x18), proto=6)), ts_ns=10 * SEC)
    later = _record(build_udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"x"), ts_ns=13 * SEC)
    events = _decode([lost, stream, later], decoder)
    dropped = [e for e in events if isinstance(e, FragmentsDropped)]
    assert [e.reason for e in dropped] == [DropReason.TIMEOUT]
    assert decoder.get_timer() is not None
    decoder.receive_record(_record(ether(0x0800, ipv4(tcp(b"cd", seq=5), proto=6)), ts_ns=14 * SEC))
    decoder.flush()
    tail: list[DecoderEvent] = []
    while not isinstance(event := decoder.next_event(), Sentinel):
        tail.append(event)
    assert [type(e) for e in tail] == [StreamGap, StreamData, StreamClosed]


@settings(deadline=None)
@given(st.sampled_from([1, 101, 113, 276, 999]), st.binary(max_size=96))
def test_arbitrary_frames_never_raise(linktype: int, frame: bytes) -> None:
    events = _decode([_record(frame, linktype=linktype)])
    assert all(isinstance(e, (UdpDatagram, PacketDropped, StreamData)) for e in events)
