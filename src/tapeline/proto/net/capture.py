"""Values shared by the capture-file readers: the packet record and the framer sentinels.

The pcap (draft-ietf-opsawg-pcap §4-§5) and pcapng (draft-ietf-opsawg-pcapng §4.2, §4.3) readers
are framers in the sans-IO style: the caller feeds bytes with `receive_data` and drains
`next_event()` until it returns `NEED_DATA`; after EOF and a clean end it returns `END_OF_CAPTURE`.
"""

import enum
from dataclasses import dataclass
from typing import Final, TypeAlias


class Sentinel(enum.Enum):
    """Framer results that are not packets."""

    NEED_DATA = "NEED_DATA"
    """More bytes are needed before another event can be produced."""
    END_OF_CAPTURE = "END_OF_CAPTURE"
    """EOF was seen and every record before it was returned."""


NEED_DATA: Final = Sentinel.NEED_DATA
END_OF_CAPTURE: Final = Sentinel.END_OF_CAPTURE


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketRecord:
    """One captured frame as the capture file stores it.

    Attributes:
        ts_ns: Capture time in nanoseconds since the Unix epoch, or None for a pcapng Simple
            Packet Block, which carries no timestamp (draft-ietf-opsawg-pcapng §4.4).
        linktype: The LINKTYPE_* value of the interface (1 = Ethernet).
        data: The captured bytes (possibly fewer than the frame had, see `orig_len`).
        orig_len: The frame's length on the wire.
        interface_id: The pcapng interface index within its section; 0 for classic pcap.
    """

    ts_ns: int | None
    linktype: int
    data: bytes
    orig_len: int
    interface_id: int = 0


ReaderEvent: TypeAlias = PacketRecord | Sentinel
