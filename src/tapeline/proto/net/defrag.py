"""IP fragment reassembly with bounded memory, driven by `now`.

RFC 791 §3.2 (IPv4 reassembly, keyed by source, destination, protocol and identification),
RFC 8200 §4.5 (IPv6 reassembly, 60 s limit), RFC 5722 §4 (overlapping IPv6 fragments: discard the
whole datagram), RFC 6946 (atomic fragments are handled by the parser, not here).

Theory of operation:

* `receive_fragment(packet, now)` files one fragment under (src, dst, protocol, ident). When the
  fragments cover [0, end of the last fragment) without a hole, a `Reassembled` event carries an
  ordinary `IPPacket` (IPv6: with its remaining extension headers walked).
* Overlaps: an overlap whose bytes agree with what is held (a duplicate or a retransmission) is
  accepted; one whose bytes differ rejects the whole datagram (RFC 5722 for both versions: two
  answers for the same bytes is an evasion or a broken sender, and we never choose one).
* Nothing incomplete is guessed: a datagram that times out (`timeout` seconds after its first
  fragment), is evicted to respect `max_datagrams` or `max_bytes`, overlaps, or is malformed,
  leaves as a `FragmentsDropped` event with the reason and how much had arrived.
* Time only moves through `now`: `get_timer()` gives the next expiry, `handle_timer(now)` fires
  it, and `receive_fragment` expires due datagrams first.
"""

import enum
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final, TypeAlias

from tapeline.proto.errors import ParseError
from tapeline.proto.net.capture import NEED_DATA, Sentinel
from tapeline.proto.net.ip import Fragment, IPAddress, IPPacket, skip_ipv6_extensions

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_DATAGRAMS: Final = 1024
DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
MAX_IP_PAYLOAD: Final = 65_535
FRAGMENT_UNIT: Final = 8

FragmentKey: TypeAlias = tuple[IPAddress, IPAddress, int, int]


class DropReason(enum.StrEnum):
    """Why a partly received datagram was given up (RFC 791 §3.2, RFC 5722 §4)."""

    TIMEOUT = "timeout"
    EVICTED = "evicted"
    OVERLAP = "overlap"
    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    END_OF_INPUT = "end_of_input"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reassembled:
    """A datagram whose fragments all arrived, as one unfragmented packet."""

    packet: IPPacket


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentsDropped:
    """A datagram that was not reassembled.

    Attributes:
        key: (src, dst, protocol, identification).
        reason: Why it was dropped.
        fragments: How many fragments had been held.
        received: How many payload bytes had been held.
    """

    key: FragmentKey
    reason: DropReason
    fragments: int
    received: int


DefragEvent: TypeAlias = Reassembled | FragmentsDropped


@dataclass(slots=True)
class _Pending:
    first: IPPacket
    deadline: float
    parts: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None
    size: int = 0


class Defragmenter:
    """Reassembles IPv4 and IPv6 fragments.

    Args:
        timeout: Seconds from a datagram's first fragment until it is dropped.
        max_datagrams: Most datagrams held at once; the oldest is evicted beyond it.
        max_bytes: Most fragment payload bytes held at once; the oldest go first beyond it.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_datagrams: int = DEFAULT_MAX_DATAGRAMS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._timeout = timeout
        self._max_datagrams = max_datagrams
        self._max_bytes = max_bytes
        self._pending: dict[FragmentKey, _Pending] = {}
        self._bytes = 0
        self._events: deque[DefragEvent] = deque()

    @property
    def bytes_held(self) -> int:
        """Fragment payload bytes currently buffered."""
        return self._bytes

    @property
    def datagrams_held(self) -> int:
        """Datagrams currently waiting for fragments."""
        return len(self._pending)

    def next_event(self) -> DefragEvent | Sentinel:
        """Return the next `Reassembled` or `FragmentsDropped` event, or `NEED_DATA`."""
        return self._events.popleft() if self._events else NEED_DATA

    def get_timer(self) -> float | None:
        """Return when the oldest held datagram expires, or None when nothing is held."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def handle_timer(self, now: float) -> None:
        """Drop every datagram whose deadline is at or before `now`."""
        for key in [k for k, p in self._pending.items() if p.deadline <= now]:
            self._drop(key, DropReason.TIMEOUT)

    def flush(self) -> None:
        """Drop every held datagram (end of a capture) with reason `END_OF_INPUT`."""
        for key in list(self._pending):
            self._drop(key, DropReason.END_OF_INPUT)

    def receive_fragment(self, packet: IPPacket, now: float) -> None:
        """File one packet; an unfragmented one passes straight through as `Reassembled`.

        Args:
            packet: A parsed IP packet.
            now: The current time in seconds (the capture time when replaying).
        """
        self.handle_timer(now)
        frag = packet.fragment
        if frag is None:
            self._events.append(Reassembled(packet=packet))
            return
        key: FragmentKey = (packet.src, packet.dst, packet.protocol, frag.ident)
        pending = self._pending.get(key)
        if pending is None:
            pending = _Pending(first=packet, deadline=now + self._timeout)
            self._pending[key] = pending
        verdict = self._check(pending, packet.payload, frag)
        if verdict is None:
            if frag.offset == 0:
                pending.first = packet
            verdict = self._insert(pending, frag.offset, packet.payload)
        if verdict is not None:
            self._drop(key, verdict)
            return
        if self._complete(pending):
            self._finish(key, pending)
            return
        self._enforce_bounds(key)

    @staticmethod
    def _check(pending: _Pending, data: bytes, frag: Fragment) -> DropReason | None:
        end = frag.offset + len(data)
        if end > MAX_IP_PAYLOAD:
            return DropReason.OVERSIZE
        if frag.more and len(data) % FRAGMENT_UNIT:
            return DropReason.MALFORMED  # RFC 791 §3.2: all but the last carry 8-byte units
        if not frag.more:
            if pending.total is not None and pending.total != end:
                return DropReason.MALFORMED
            pending.total = end
        if pending.total is not None and end > pending.total:
            return DropReason.MALFORMED
        return None

    def _insert(self, pending: _Pending, offset: int, data: bytes) -> DropReason | None:
        end = offset + len(data)
        for other_offset, other in pending.parts.items():
            lo = max(offset, other_offset)
            hi = min(end, other_offset + len(other))
            if (
                lo < hi
                and data[lo - offset : hi - offset] != other[lo - other_offset : hi - other_offset]
            ):
                return DropReason.OVERLAP
        previous = pending.parts.get(offset)
        if previous is not None and len(previous) >= len(data):
            return None  # a duplicate: every byte already agrees with what is held
        pending.parts[offset] = data
        grown = len(data) - (len(previous) if previous is not None else 0)
        pending.size += grown
        self._bytes += grown
        return None

    @staticmethod
    def _complete(pending: _Pending) -> bool:
        if pending.total is None:
            return False
        reach = 0
        for offset in sorted(pending.parts):
            if offset > reach:
                return False
            reach = max(reach, offset + len(pending.parts[offset]))
        return reach >= pending.total

    def _finish(self, key: FragmentKey, pending: _Pending) -> None:
        del self._pending[key]
        self._bytes -= pending.size
        assembled = bytearray(pending.total or 0)
        for offset in sorted(pending.parts):
            part = pending.parts[offset]
            assembled[offset : offset + len(part)] = part
        protocol, payload = pending.first.protocol, bytes(assembled)
        if pending.first.version == 6:  # noqa: PLR2004  # IP version
            try:
                protocol, payload = skip_ipv6_extensions(protocol, payload)
            except ParseError:
                self._events.append(self._dropped(key, pending, DropReason.MALFORMED))
                return
        packet = replace(pending.first, protocol=protocol, payload=payload, fragment=None)
        self._events.append(Reassembled(packet=packet))

    def _enforce_bounds(self, current: FragmentKey) -> None:
        # A datagram too big for the whole budget is refused; otherwise the oldest others make room.
        if self._pending[current].size > self._max_bytes:
            self._drop(current, DropReason.OVERSIZE)
            return
        while len(self._pending) > self._max_datagrams or self._bytes > self._max_bytes:
            oldest = next(key for key in self._pending if key != current)
            self._drop(oldest, DropReason.EVICTED)

    def _drop(self, key: FragmentKey, reason: DropReason) -> None:
        pending = self._pending.pop(key)
        self._bytes -= pending.size
        self._events.append(self._dropped(key, pending, reason))

    @staticmethod
    def _dropped(key: FragmentKey, pending: _Pending, reason: DropReason) -> FragmentsDropped:
        return FragmentsDropped(
            key=key, reason=reason, fragments=len(pending.parts), received=pending.size
        )
