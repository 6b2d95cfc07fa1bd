"""TCP stream reassembly per direction, for SIP over TCP seen on a tap.

RFC 9293 §3.4 (sequence numbers, compared modulo 2**32), §3.5 (SYN, FIN, RST) and §3.10.7.4
(segment text trimmed to the expected window). The SIP framer on top (RFC 3261 §18.3) is
elsewhere; this module only turns segments into ordered bytes per direction.

Theory of operation:

* A direction (`FlowKey`: src, sport, dst, dport) starts at its SYN, or at the first segment that
  carries data when the capture began mid-connection; segments without data for an unknown
  direction are ignored, so a late ACK or retransmitted FIN never invents a stream.
* Sequence numbers are unwrapped to an unbounded offset. Overlaps resolve as "first copy wins":
  bytes already delivered or already held are never replaced by a later copy (retransmission or
  an overlapping segment with other content). Bytes ahead of a hole wait in a per-direction
  buffer bounded by `max_buffer`.
* A hole is never filled by guessing. When the buffer overflows, or a hole has been open for
  `gap_timeout` seconds (a passive tap never sees a segment the tap dropped), the hole is skipped
  and reported as `StreamGap` with its size, then the waiting bytes flow on.
* FIN closes a direction once every byte before it is delivered; RST closes it at once (waiting
  bytes are delivered with their gaps first); `idle_timeout` and the `max_flows` bound
  (least recently active first) close it too. Each close is one `StreamClosed` with its reason.
"""

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from tapeline.proto.net.capture import NEED_DATA, Sentinel
from tapeline.proto.net.ip import TCP_FIN, TCP_RST, TCP_SYN, IPAddress, TcpSegment

SEQ_MODULUS: Final = 1 << 32
SEQ_HALF: Final = 1 << 31
DEFAULT_MAX_BUFFER: Final = 1024 * 1024
DEFAULT_MAX_FLOWS: Final = 10_000
DEFAULT_GAP_TIMEOUT: Final = 10.0
DEFAULT_IDLE_TIMEOUT: Final = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowKey:
    """One direction of a TCP connection."""

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int

    def reversed(self) -> "FlowKey":
        """Return the opposite direction."""
        return FlowKey(src=self.dst, sport=self.dport, dst=self.src, dport=self.sport)


class CloseReason(enum.StrEnum):
    """Why a direction ended (RFC 9293 §3.5 for FIN and RST)."""

    FIN = "fin"
    RST = "rst"
    TIMEOUT = "timeout"
    EVICTED = "evicted"
    END_OF_INPUT = "end_of_input"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamData:
    """In-order bytes of one direction; `time` is when they became deliverable."""

    flow: FlowKey
    data: bytes
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamGap:
    """`missing` bytes of one direction were never seen and were skipped."""

    flow: FlowKey
    missing: int
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClosed:
    """One direction ended; nothing more will be delivered for it."""

    flow: FlowKey
    reason: CloseReason
    time: float


TcpEvent: TypeAlias = StreamData | StreamGap | StreamClosed


@dataclass(slots=True)
class _Direction:
    next_abs: int
    last_seen: float
    pending: dict[int, bytes] = field(default_factory=dict)
    pending_bytes: int = 0
    fin_abs: int | None = None
    hole_since: float | None = None

    def unwrap(self, seq: int) -> int:
        diff = (seq - self.next_abs) % SEQ_MODULUS
        if diff >= SEQ_HALF:
            diff -= SEQ_MODULUS
        return self.next_abs + diff


class TcpReassembler:
    """Orders the bytes of every TCP direction it is fed.

    Args:
        max_buffer: Most out-of-order bytes held per direction before a hole is skipped.
        max_flows: Most directions tracked; the least recently active is closed beyond it.
        gap_timeout: Seconds a hole may stay open before it is skipped.
        idle_timeout: Seconds without a segment before a direction is closed.
    """

    def __init__(
        self,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_flows: int = DEFAULT_MAX_FLOWS,
        gap_timeout: float = DEFAULT_GAP_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._max_buffer = max_buffer
        self._max_flows = max_flows
        self._gap_timeout = gap_timeout
        self._idle_timeout = idle_timeout
        self._flows: OrderedDict[FlowKey, _Direction] = OrderedDict()
        self._events: deque[TcpEvent] = deque()

    @property
    def flow_count(self) -> int:
        """Directions currently tracked."""
        return len(self._flows)

    def next_event(self) -> TcpEvent | Sentinel:
        """Return the next stream event, or `NEED_DATA`."""
        return self._events.popleft() if self._events else NEED_DATA

    def get_timer(self) -> float | None:
        """Return the earliest gap or idle deadline, or None when no direction is tracked."""
        deadlines = [d.last_seen + self._idle_timeout for d in self._flows.values()]
        deadlines += [
            d.hole_since + self._gap_timeout
            for d in self._flows.values()
            if d.hole_since is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Skip holes older than `gap_timeout` and close directions idle for `idle_timeout`."""
        for flow, state in list(self._flows.items()):
            if state.last_seen + self._idle_timeout <= now:
                self._close(flow, state, CloseReason.TIMEOUT, now)
            elif state.hole_since is not None and state.hole_since + self._gap_timeout <= now:
                self._skip_hole(flow, state, now)
                self._maybe_fin(flow, state, now)

    def flush(self, now: float) -> None:
        """Close every direction (end of a capture): waiting bytes leave with their gaps."""
        for flow, state in list(self._flows.items()):
            self._close(flow, state, CloseReason.END_OF_INPUT, now)

    def receive_segment(
        self, *, src: IPAddress, dst: IPAddress, segment: TcpSegment, now: float
    ) -> None:
        """Feed one captured segment.

        Args:
            src: Source address of the IP packet.
            dst: Destination address of the IP packet.
            segment: The parsed segment.
            now: The current time in seconds (the capture time when replaying).
        """
        self.handle_timer(now)
        flow = FlowKey(src=src, sport=segment.sport, dst=dst, dport=segment.dport)
        flags = segment.flags
        data_seq = (segment.seq + 1) % SEQ_MODULUS if flags & TCP_SYN else segment.seq
        state = self._flows.get(flow)
        if state is None:
            if not (flags & TCP_SYN or segment.payload):
                return
            state = _Direction(next_abs=data_seq, last_seen=now)
            self._flows[flow] = state
            self._evict(now)
        self._flows.move_to_end(flow)
        state.last_seen = now
        if flags & TCP_RST:
            self._close(flow, state, CloseReason.RST, now)
            return
        start = state.unwrap(data_seq)
        if flags & TCP_FIN:
            state.fin_abs = start + len(segment.payload)
        self._accept(flow, state, start, segment.payload, now)
        self._maybe_fin(flow, state, now)

    def _accept(
        self, flow: FlowKey, state: _Direction, start: int, data: bytes, now: float
    ) -> None:
        end = start + len(data)
        if end <= state.next_abs:
            return  # retransmission of bytes already delivered (or an empty segment)
        if start < state.next_abs:
            data = data[state.next_abs - start :]
            start = state.next_abs
        for piece_start, piece in self._uncovered(state, start, data):
            state.pending[piece_start] = piece
            state.pending_bytes += len(piece)
        chunks = self._drain(state)
        if chunks:
            self._events.append(StreamData(flow=flow, data=b"".join(chunks), time=now))
        if not state.pending:
            state.hole_since = None
        elif chunks or state.hole_since is None:
            state.hole_since = now
        while state.pending_bytes > self._max_buffer:
            self._skip_hole(flow, state, now)

    @staticmethod
    def _uncovered(state: _Direction, start: int, data: bytes) -> list[tuple[int, bytes]]:
        # First copy wins: only the parts of `data` that no held segment covers are kept.
        end = start + len(data)
        pieces: list[tuple[int, bytes]] = []
        pos = start
        for held_start in sorted(state.pending):
            held_end = held_start + len(state.pending[held_start])
            if held_end <= pos:
                continue
            if held_start >= end:
                break
            if held_start > pos:
                pieces.append((pos, data[pos - start : held_start - start]))
            pos = max(pos, held_end)
        if pos < end:
            pieces.append((pos, data[pos - start :]))
        return pieces

    def _drain(self, state: _Direction) -> list[bytes]:
        chunks: list[bytes] = []
        while state.pending:
            first = min(state.pending)
            if first > state.next_abs:
                break
            data = state.pending.pop(first)
            state.pending_bytes -= len(data)
            if first + len(data) > state.next_abs:
                chunks.append(data[state.next_abs - first :])
                state.next_abs = first + len(data)
        return chunks

    def _skip_hole(self, flow: FlowKey, state: _Direction, now: float) -> None:
        first = min(state.pending)
        self._events.append(StreamGap(flow=flow, missing=first - state.next_abs, time=now))
        state.next_abs = first
        chunks = self._drain(state)
        self._events.append(StreamData(flow=flow, data=b"".join(chunks), time=now))
        state.hole_since = now if state.pending else None

    def _maybe_fin(self, flow: FlowKey, state: _Direction, now: float) -> None:
        if state.fin_abs is not None and state.next_abs >= state.fin_abs:
            self._close(flow, state, CloseReason.FIN, now)

    def _close(self, flow: FlowKey, state: _Direction, reason: CloseReason, now: float) -> None:
        while state.pending:
            self._skip_hole(flow, state, now)
        del self._flows[flow]
        self._events.append(StreamClosed(flow=flow, reason=reason, time=now))

    def _evict(self, now: float) -> None:
        while len(self._flows) > self._max_flows:
            flow, state = next(iter(self._flows.items()))
            self._close(flow, state, CloseReason.EVICTED, now)
