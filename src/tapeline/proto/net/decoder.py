"""From capture records to UDP datagrams and TCP stream events.

Composes the layers of this package: link layer (`frames`), IPv4/IPv6 (`ip`, RFC 791, RFC 8200),
reassembly (`defrag`, RFC 791 §3.2, RFC 8200 §4.5), GRE/ERSPAN decapsulation, UDP (RFC 768) and
TCP stream reassembly (`tcp`, RFC 9293).

Strategy: a mirror port carries every broken frame on the trunk, so a frame that does not parse
is not an exception for the caller but a `PacketDropped` event with the parser's message and a
counter; frames that are not IP (ARP, STP) are counted and skipped. Time is the capture
timestamp: defragmentation and TCP timers are checked once per `TIMER_CHECK_INTERVAL` seconds of
capture time as records arrive, and the adapter may also drive `get_timer()`/`handle_timer(now)`.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from tapeline.proto.errors import ParseError
from tapeline.proto.net.capture import NEED_DATA, PacketRecord, Sentinel
from tapeline.proto.net.defrag import Defragmenter, FragmentsDropped, Reassembled
from tapeline.proto.net.frames import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    LINKTYPE_ETHERNET,
    decode_gre,
    decode_link,
)
from tapeline.proto.net.ip import (
    PROTO_GRE,
    PROTO_TCP,
    PROTO_UDP,
    IPAddress,
    IPPacket,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
)
from tapeline.proto.net.tcp import StreamClosed, StreamData, StreamGap, TcpReassembler

NS_PER_S: Final = 1_000_000_000
TIMER_CHECK_INTERVAL: Final = 1.0
MAX_ENCAPSULATION_DEPTH: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpDatagram:
    """One UDP datagram (reassembled when it came in fragments)."""

    ts_ns: int
    src: IPAddress
    dst: IPAddress
    sport: int
    dport: int
    payload: bytes
    vlans: tuple[int, ...] = ()
    frame: bytes | None = field(default=None, compare=False, repr=False)
    """The Ethernet frame that carried it whole (not reassembled): what a journal keeps."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketDropped:
    """A frame that could not be decoded; `reason` is the parser's message."""

    ts_ns: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecoderCounters:
    """What the decoder has seen so far."""

    records: int
    non_ip: int
    malformed: int
    fragments: int
    udp_datagrams: int
    tcp_segments: int
    other_ip: int


DecoderEvent: TypeAlias = (
    UdpDatagram | PacketDropped | FragmentsDropped | StreamData | StreamGap | StreamClosed
)


class PacketDecoder:
    """Decodes capture records into UDP datagrams and TCP stream events.

    Args:
        defragmenter: The IP reassembler to use; a default one when None.
        reassembler: The TCP reassembler to use; a default one when None.
    """

    def __init__(
        self,
        *,
        defragmenter: Defragmenter | None = None,
        reassembler: TcpReassembler | None = None,
    ) -> None:
        self._defrag = defragmenter if defragmenter is not None else Defragmenter()
        self._tcp = reassembler if reassembler is not None else TcpReassembler()
        self._events: deque[DecoderEvent] = deque()
        self._last_ts_ns = 0
        self._frame: bytes | None = None  # the record being decoded, while it is one datagram
        self._next_check: float | None = None
        self._counts = dict.fromkeys(DecoderCounters.__slots__, 0)

    @property
    def counters(self) -> DecoderCounters:
        """A snapshot of the counters."""
        return DecoderCounters(**self._counts)

    def next_event(self) -> DecoderEvent | Sentinel:
        """Return the next decoded event, or `NEED_DATA`."""
        return self._events.popleft() if self._events else NEED_DATA

    def get_timer(self) -> float | None:
        """Return the earliest defragmentation or TCP deadline, in capture seconds."""
        timers = [t for t in (self._defrag.get_timer(), self._tcp.get_timer()) if t is not None]
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        """Fire the defragmentation and TCP timers due at `now`."""
        self._defrag.handle_timer(now)
        self._tcp.handle_timer(now)
        self._collect()

    def flush(self) -> None:
        """End of input: drop held fragments and close every TCP direction."""
        now = self._last_ts_ns / NS_PER_S
        self._defrag.flush()
        self._tcp.flush(now)
        self._collect()

    def receive_record(self, record: PacketRecord) -> None:
        """Decode one capture record; results are drained with `next_event()`.

        A record without a timestamp (pcapng Simple Packet Block) takes the last one seen.
        """
        self._counts["records"] += 1
        ts_ns = self._last_ts_ns if record.ts_ns is None else record.ts_ns
        self._last_ts_ns = ts_ns
        now = ts_ns / NS_PER_S
        if self._next_check is None or now >= self._next_check:
            self._next_check = now + TIMER_CHECK_INTERVAL
            self.handle_timer(now)
        self._frame = record.data if record.linktype == LINKTYPE_ETHERNET else None
        try:
            self._decode_frame(record.linktype, record.data, ts_ns, depth=0)
        except ParseError as exc:
            self._counts["malformed"] += 1
            self._events.append(PacketDropped(ts_ns=ts_ns, reason=str(exc)))

    def _decode_frame(self, linktype: int, frame: bytes, ts_ns: int, *, depth: int) -> None:
        link = decode_link(linktype, frame)
        if link.ethertype == ETHERTYPE_IPV4:
            packet = parse_ipv4(link.payload)
        elif link.ethertype == ETHERTYPE_IPV6:
            packet = parse_ipv6(link.payload)
        else:
            self._counts["non_ip"] += 1
            return
        if packet.fragment is not None:
            self._counts["fragments"] += 1
            self._frame = None  # what completes is the datagram, not this frame
        self._defrag.receive_fragment(packet, ts_ns / NS_PER_S)
        while not isinstance(event := self._defrag.next_event(), Sentinel):
            if isinstance(event, Reassembled):
                self._decode_ip(event.packet, ts_ns, link.vlans, depth=depth)
            else:
                self._events.append(event)

    def _decode_ip(
        self, packet: IPPacket, ts_ns: int, vlans: tuple[int, ...], *, depth: int
    ) -> None:
        if packet.protocol == PROTO_UDP:
            udp = parse_udp(packet.payload)
            self._counts["udp_datagrams"] += 1
            self._events.append(
                UdpDatagram(
                    ts_ns=ts_ns,
                    src=packet.src,
                    dst=packet.dst,
                    sport=udp.sport,
                    dport=udp.dport,
                    payload=udp.payload,
                    vlans=vlans,
                    frame=self._frame,
                )
            )
        elif packet.protocol == PROTO_TCP:
            segment = parse_tcp(packet.payload)
            self._counts["tcp_segments"] += 1
            now = ts_ns / NS_PER_S
            self._tcp.receive_segment(src=packet.src, dst=packet.dst, segment=segment, now=now)
            self._collect()
        elif packet.protocol == PROTO_GRE and depth < MAX_ENCAPSULATION_DEPTH:
            inner = decode_gre(packet.payload)
            if inner is None:
                self._counts["other_ip"] += 1
                return
            self._decode_frame(LINKTYPE_ETHERNET, inner, ts_ns, depth=depth + 1)
        else:
            self._counts["other_ip"] += 1

    def _collect(self) -> None:
        while isinstance(event := self._defrag.next_event(), FragmentsDropped):
            self._events.append(event)
        while not isinstance(tcp_event := self._tcp.next_event(), Sentinel):
            self._events.append(tcp_event)
