from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.net.capture import Sentinel
from tapeline.proto.net.ip import TcpSegment, parse_tcp
from tapeline.proto.net.tcp import (
    CloseReason,
    FlowKey,
    StreamClosed,
    StreamData,
    StreamGap,
    TcpEvent,
    TcpReassembler,
)
from tests.unit.proto.net.builders import tcp

SRC, DST = ip_address("192.0.2.1"), ip_address("192.0.2.2")
FLOW = FlowKey(src=SRC, sport=5060, dst=DST, dport=40000)
ISN = 1000
MESSAGE = b"INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n" * 3
SYN, FIN, RST, ACK_PSH = 0x02, 0x11, 0x04, 0x18


def _seg(data: bytes, seq: int, flags: int = ACK_PSH) -> TcpSegment:
    return parse_tcp(tcp(data, seq=seq % 2**32, flags=flags))


def _split(data: bytes, size: int, isn: int = ISN) -> list[TcpSegment]:
    return [_seg(data[i : i + size], isn + 1 + i) for i in range(0, len(data), size)]


def _run(
    segments: list[TcpSegment], reassembler: TcpReassembler | None = None, now: float = 0.0
) -> list[TcpEvent]:
    tcp_ = reassembler or TcpReassembler()
    events: list[TcpEvent] = []
    for segment in segments:
        tcp_.receive_segment(src=SRC, dst=DST, segment=segment, now=now)
        while not isinstance(event := tcp_.next_event(), Sentinel):
            events.append(event)
    return events


def _bytes(events: list[TcpEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, StreamData))


def test_in_order_after_syn() -> None:
    events = _run([_seg(b"", ISN, SYN), *_split(MESSAGE, 40)])
    assert _bytes(events) == MESSAGE
    assert all(e.flow == FLOW for e in events)


def test_flow_key_reversed() -> None:
    assert FLOW.reversed().reversed() == FLOW
    assert FLOW.reversed().sport == 40000


@settings(deadline=None)
@given(st.permutations(_split(MESSAGE, 17)), st.lists(st.integers(0, 10), max_size=5))
def test_reorder_and_retransmission_give_the_same_bytes(
    order: list[TcpSegment], repeats: list[int]
) -> None:
    segments = [_seg(b"", ISN, SYN), *order, *(order[i] for i in repeats)]
    events = _run(segments)
    assert _bytes(events) == MESSAGE
    assert not any(isinstance(e, StreamGap) for e in events)


def test_overlapping_segments_first_copy_wins() -> None:
    segments = [
        _seg(b"", ISN, SYN),
        _seg(b"ABCDEF", ISN + 1),
        _seg(b"xxxxGHIJ", ISN + 3),  # overlaps delivered bytes: only GHIJ is new
        _seg(b"OP", ISN + 15),
        _seg(b"zzzz", ISN + 15),  # same start as held, longer: only the tail is taken
        _seg(b"KLMNyy", ISN + 11),
    ]
    assert _bytes(_run(segments)) == b"ABCDEFGHIJKLMNOPzz"


def test_mid_stream_start_without_syn() -> None:
    events = _run(_split(MESSAGE, 30, isn=5_000))
    assert _bytes(events) == MESSAGE


def test_sequence_wraparound() -> None:
    isn = 2**32 - 20
    events = _run([_seg(b"", isn, SYN), *_split(MESSAGE, 16, isn=isn)[::-1]])
    assert _bytes(events) == MESSAGE


def test_pure_ack_or_fin_for_unknown_flow_is_ignored() -> None:
    reassembler = TcpReassembler()
    assert _run([_seg(b"", 5), _seg(b"", 5, FIN)], reassembler) == []
    assert reassembler.flow_count == 0
    assert reassembler.get_timer() is None


def test_fin_closes_after_all_bytes() -> None:
    segs = _split(b"hello world", 6)
    fin = _seg(b"", ISN + 12, FIN)
    events = _run([_seg(b"", ISN, SYN), segs[0], fin, segs[1]])
    assert _bytes(events) == b"hello world"
    assert events[-1] == StreamClosed(flow=FLOW, reason=CloseReason.FIN, time=0.0)


def test_rst_flushes_with_gap_and_closes() -> None:
    events = _run(
        [
            _seg(b"", ISN, SYN),
            _seg(b"abc", ISN + 1),
            _seg(b"xyz", ISN + 10),
            _seg(b"", ISN + 13, RST),
        ]
    )
    assert events[1:] == [
        StreamGap(flow=FLOW, missing=6, time=0.0),
        StreamData(flow=FLOW, data=b"xyz", time=0.0),
        StreamClosed(flow=FLOW, reason=CloseReason.RST, time=0.0),
    ]


def test_buffer_overflow_skips_the_hole_and_reports_it() -> None:
    reassembler = TcpReassembler(max_buffer=8)
    events = _run(
        [_seg(b"", ISN, SYN), _seg(b"12345", ISN + 11), _seg(b"67890", ISN + 16)], reassembler
    )
    assert events == [
        StreamGap(flow=FLOW, missing=10, time=0.0),
        StreamData(flow=FLOW, data=b"1234567890", time=0.0),
    ]


def test_gap_timeout_skips_a_hole_the_tap_never_saw() -> None:
    reassembler = TcpReassembler(gap_timeout=2.0, idle_timeout=100.0)
    events = _run([_seg(b"", ISN, SYN), _seg(b"later", ISN + 4)], reassembler, now=10.0)
    assert events == []
    assert reassembler.get_timer() == 12.0
    reassembler.handle_timer(12.0)
    assert [reassembler.next_event(), reassembler.next_event()] == [
        StreamGap(flow=FLOW, missing=3, time=12.0),
        StreamData(flow=FLOW, data=b"later", time=12.0),
    ]
    assert reassembler.get_timer() == 110.0


def test_fin_after_a_skipped_hole_closes_on_the_timer() -> None:
    reassembler = TcpReassembler(gap_timeout=1.0)
    _run([_seg(b"", ISN, SYN), _seg(b"end", ISN + 5, FIN)], reassembler)
    reassembler.handle_timer(1.0)
    events = [reassembler.next_event() for _ in range(3)]
    assert isinstance(events[2], StreamClosed)
    assert events[2].reason is CloseReason.FIN


def test_idle_timeout_closes() -> None:
    reassembler = TcpReassembler(idle_timeout=60.0)
    _run([_seg(b"abc", ISN)], reassembler, now=0.0)
    reassembler.handle_timer(60.0)
    assert reassembler.next_event() == StreamClosed(
        flow=FLOW, reason=CloseReason.TIMEOUT, time=60.0
    )
    assert reassembler.flow_count == 0


def test_max_flows_evicts_least_recently_active() -> None:
    reassembler = TcpReassembler(max_flows=1)
    other = parse_tcp(tcp(b"b", seq=1, sport=5061))
    events = _run([_seg(b"a", ISN), other], reassembler)
    assert events[1] == StreamClosed(flow=FLOW, reason=CloseReason.EVICTED, time=0.0)
    assert reassembler.flow_count == 1


def test_flush_closes_everything() -> None:
    reassembler = TcpReassembler()
    _run([_seg(b"a", ISN), _seg(b"c", ISN + 2)], reassembler)
    reassembler.flush(5.0)
    events = [reassembler.next_event() for _ in range(3)]
    assert events == [
        StreamGap(flow=FLOW, missing=1, time=5.0),
        StreamData(flow=FLOW, data=b"c", time=5.0),
        StreamClosed(flow=FLOW, reason=CloseReason.END_OF_INPUT, time=5.0),
    ]
