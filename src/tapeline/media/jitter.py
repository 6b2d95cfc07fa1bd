"""Reorder and de-duplicate the RTP packets of one stream; count what RFC 3550 §6.4.1 reports.

Theory of operation: a stream (one m-line direction) may carry several SSRCs over its life
(re-INVITE, transfer, SBC failover, RFC 7866 §8.1.3) and one SSRC may restart its sequence
numbers (corpus `rtpproxy__sess6.a.rtp.pcap`). Each such run is a *segment*, numbered from 0; a
new SSRC or a confirmed sequence reset closes the current segment (its buffer is released) and
opens the next. Inside a segment, sequence numbers are extended to 64 bits across the 16-bit wrap
(RFC 3550 Appendix A.1). A packet is held until the one before it has been released; when a gap
stays open longer than `window` seconds of arrival time, or the buffer holds `max_packets`, the
missing packets are declared lost and release skips over them. A packet that arrives after its
place was skipped is *late*: counted as received (as RFC 3550 counts loss) but not released.

A jump of more than `MAX_DROPOUT` sequence numbers, or a step back of more than `MAX_MISORDER`
onto sequence numbers already released (a sender restarting at 0, as in sess6), is believed only
when the next packet follows it (the A.1 probation rule, with one packet of probation);
otherwise the packet is dropped and counted as `late` (behind) or `stray` (ahead). A true
duplicate repeats the timestamp and payload of a packet released less than `DUPLICATE_HORIZON`
seconds earlier; the same packet later than that is a restart with equal audio.

Interarrival jitter is RFC 3550 §6.4.1 / A.8: arrival times come in as seconds (`now` from the
adapter or the capture timestamp) and are converted to the RTP clock here. Packets that repeat
the previous timestamp (RFC 4733 event updates) do not update jitter.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tapeline.proto.rtp import RtpPacket

SEQUENCE_MODULUS: Final = 1 << 16
TIMESTAMP_MODULUS: Final = 1 << 32
MAX_DROPOUT: Final = 3000  # RFC 3550 A.1
MAX_MISORDER: Final = 100  # RFC 3550 A.1
JITTER_GAIN: Final = 16  # RFC 3550 §6.4.1: J += (|D| - J) / 16
_RECENT_MEMORY: Final = 1024
# A network duplicate arrives soon after the original; the same packet seconds later is a
# sender that restarted its sequence numbers (and, in sess6, its timestamps) with equal audio.
DUPLICATE_HORIZON: Final = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderedPacket:
    """A packet released in sequence order.

    Attributes:
        packet: the RTP packet.
        arrival: its arrival time in seconds, as passed to `push`.
        segment: the segment number (a new SSRC or a sequence reset starts the next one).
        lost_before: packets declared lost immediately before this one.
    """

    packet: RtpPacket
    arrival: float
    segment: int
    lost_before: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """Reception figures of one stream over all its segments (RFC 3550 §6.4.1 terms)."""

    expected: int = 0
    received: int = 0
    duplicates: int = 0
    late: int = 0
    stray: int = 0
    jitter: float = 0.0  # RTP timestamp units, current value
    max_jitter: float = 0.0
    longest_gap: float = 0.0  # seconds between consecutive arrivals
    first_arrival: float | None = None
    last_arrival: float | None = None
    segments: int = 0
    ssrcs: tuple[int, ...] = ()

    @property
    def lost(self) -> int:
        """Expected minus received, never negative (duplicates are not received twice)."""
        return max(self.expected - self.received, 0)


def _fingerprint(packet: RtpPacket) -> tuple[int, int]:
    return packet.timestamp, hash(packet.payload)


class _Segment:
    def __init__(self, number: int, packet: RtpPacket, extended: int) -> None:
        self.number = number
        self.ssrc = packet.ssrc
        self.base = extended
        self.highest = extended
        self.next_release = extended
        self.buffer: dict[int, tuple[RtpPacket, float]] = {}
        # (timestamp, payload hash, arrival) of recently released packets, bounded.
        self.recent: dict[int, tuple[int, int, float]] = {}
        self.recent_order: deque[int] = deque()
        self.lost_pending = 0

    def extend(self, sequence: int) -> int:
        delta = (sequence - self.highest) % SEQUENCE_MODULUS
        if delta >= SEQUENCE_MODULUS // 2:
            delta -= SEQUENCE_MODULUS
        return self.highest + delta

    def is_duplicate(self, extended: int, packet: RtpPacket, arrival: float) -> bool:
        seen = self.recent.get(extended)
        return (
            seen is not None
            and seen[:2] == _fingerprint(packet)
            and arrival - seen[2] <= DUPLICATE_HORIZON
        )

    def remember(self, extended: int, packet: RtpPacket, arrival: float) -> None:
        self.recent[extended] = (*_fingerprint(packet), arrival)
        self.recent_order.append(extended)
        if len(self.recent_order) > _RECENT_MEMORY:
            self.recent.pop(self.recent_order.popleft(), None)

    @property
    def expected(self) -> int:
        return self.highest - self.base + 1


class ReorderBuffer:
    """Per-stream reorder/de-duplication buffer with bounded memory.

    Args:
        clock_rate: the RTP clock of the stream's audio, for jitter.
        window: seconds a gap may stay open before its packets are declared lost.
        max_packets: most packets held at once; past it the oldest gap is declared lost.
    """

    def __init__(self, *, clock_rate: int, window: float = 0.5, max_packets: int = 256) -> None:
        self._clock_rate = clock_rate
        self._window = window
        self._max_packets = max_packets
        self._segment: _Segment | None = None
        self._probation: tuple[RtpPacket, float, bool] | None = None
        self._segments = 0
        self._expected_closed = 0
        self._received = 0
        self._duplicates = 0
        self._late = 0
        self._stray = 0
        self._jitter = 0.0
        self._max_jitter = 0.0
        self._transit: float | None = None
        self._last_timestamp: int | None = None
        self._longest_gap = 0.0
        self._first_arrival: float | None = None
        self._last_arrival: float | None = None
        self._ssrcs: list[int] = []

    def push(self, packet: RtpPacket, arrival: float) -> list[OrderedPacket]:
        """Accept one packet; return the packets now releasable, in order.

        Args:
            packet: a parsed RTP packet of this stream.
            arrival: when it arrived, in seconds (monotonic within the stream).

        Returns:
            Zero or more packets in sequence order.
        """
        if self._last_arrival is not None:
            self._longest_gap = max(self._longest_gap, arrival - self._last_arrival)
        self._first_arrival = arrival if self._first_arrival is None else self._first_arrival
        self._last_arrival = arrival
        released: list[OrderedPacket] = []
        segment = self._segment
        if segment is None or packet.ssrc != segment.ssrc:
            released += self._open_segment(packet, arrival)
            return released + self._release(arrival)
        extended = segment.extend(packet.sequence_number)
        if extended - segment.highest > MAX_DROPOUT:
            return self._probe(packet, arrival, behind=False)
        if extended in segment.buffer or segment.is_duplicate(extended, packet, arrival):
            self._duplicates += 1
            return released
        if extended < segment.next_release - MAX_MISORDER:
            return self._probe(packet, arrival, behind=True)
        self._drop_probation()
        if extended < segment.next_release:
            self._count_rejected(behind=True)
            return released
        self._accept(segment, packet, extended, arrival)
        return self._release(arrival)

    def flush(self) -> list[OrderedPacket]:
        """Release everything held, declaring the remaining gaps lost (end of stream)."""
        return self._release(float("inf"))

    @property
    def stats(self) -> StreamStats:
        """A snapshot of the stream's figures so far."""
        segment = self._segment
        return StreamStats(
            expected=self._expected_closed + (segment.expected if segment else 0),
            received=self._received,
            duplicates=self._duplicates,
            late=self._late,
            stray=self._stray,
            jitter=self._jitter,
            max_jitter=self._max_jitter,
            longest_gap=self._longest_gap,
            first_arrival=self._first_arrival,
            last_arrival=self._last_arrival,
            segments=self._segments,
            ssrcs=tuple(self._ssrcs),
        )

    def _probe(self, packet: RtpPacket, arrival: float, *, behind: bool) -> list[OrderedPacket]:
        previous = self._probation
        self._probation = (packet, arrival, behind)
        if previous is None:
            return []
        candidate, candidate_arrival, candidate_behind = previous
        follows = (candidate.sequence_number + 1) % SEQUENCE_MODULUS == packet.sequence_number
        if not follows:
            self._count_rejected(behind=candidate_behind)
            return []
        # Two packets in a row after a big jump: the sender restarted its sequence numbers.
        self._probation = None
        released = self._open_segment(candidate, candidate_arrival)
        segment = self._segment
        if segment is not None:  # always: _open_segment just set it
            self._accept(segment, packet, segment.extend(packet.sequence_number), arrival)
        return released + self._release(arrival)

    def _drop_probation(self) -> None:
        if self._probation is not None:
            self._count_rejected(behind=self._probation[2])
            self._probation = None

    def _count_rejected(self, *, behind: bool) -> None:
        if behind:
            self._late += 1
            self._received += 1
        else:
            self._stray += 1

    def _open_segment(self, packet: RtpPacket, arrival: float) -> list[OrderedPacket]:
        released = self.flush() if self._segment is not None else []
        if self._segment is not None:
            self._expected_closed += self._segment.expected
        if packet.ssrc not in self._ssrcs:
            self._ssrcs.append(packet.ssrc)
        self._segment = _Segment(self._segments, packet, packet.sequence_number)
        self._segments += 1
        self._transit = None
        self._last_timestamp = None
        self._accept(self._segment, packet, packet.sequence_number, arrival)
        return released

    def _accept(self, segment: _Segment, packet: RtpPacket, extended: int, arrival: float) -> None:
        self._received += 1
        segment.highest = max(segment.highest, extended)
        segment.buffer[extended] = (packet, arrival)
        if packet.timestamp != self._last_timestamp:
            transit = arrival * self._clock_rate - packet.timestamp
            if self._transit is not None:
                difference = abs(transit - self._transit)
                # Timestamps wrap at 2^32: take the short way round.
                difference = min(difference, abs(TIMESTAMP_MODULUS - difference))
                self._jitter += (difference - self._jitter) / JITTER_GAIN
                self._max_jitter = max(self._max_jitter, self._jitter)
            self._transit = transit
            self._last_timestamp = packet.timestamp

    def _release(self, now: float) -> list[OrderedPacket]:
        segment = self._segment
        released: list[OrderedPacket] = []
        if segment is None:
            return released
        while segment.buffer:
            if segment.next_release not in segment.buffer:
                oldest = min(arrival for _, arrival in segment.buffer.values())
                if len(segment.buffer) <= self._max_packets and now - oldest <= self._window:
                    break
                skip_to = min(segment.buffer)
                segment.lost_pending += skip_to - segment.next_release
                segment.next_release = skip_to
            packet, arrival = segment.buffer.pop(segment.next_release)
            segment.remember(segment.next_release, packet, arrival)
            released.append(
                OrderedPacket(
                    packet=packet,
                    arrival=arrival,
                    segment=segment.number,
                    lost_before=segment.lost_pending,
                )
            )
            segment.lost_pending = 0
            segment.next_release += 1
        return released
