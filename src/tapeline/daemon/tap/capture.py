"""AF_PACKET capture sockets (Linux, packet(7)): promiscuous, non-blocking, kernel drops counted.

No kernel BPF filter: the tracker filters in userspace (it keeps UDP and TCP, follows SIP and only
routes RTP that SDP announced), so a SIP trunk on an unexpected port is never filtered away before
we could see it. Packets the host itself sends (`PACKET_OUTGOING`) are skipped: a mirror port
only receives, and on `lo` every packet would otherwise be seen twice (libpcap does the same).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

from tapeline.proto.net import PacketRecord
from tapeline.proto.net.frames import LINKTYPE_ETHERNET

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_STATISTICS: Final = 6
PACKET_OUTGOING: Final = 4
SNAPLEN: Final = 65535
_TP_STATS: Final = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops
_MREQ: Final = struct.Struct("iHH8s")  # struct packet_mreq


@dataclass(slots=True)
class CaptureCounters:
    """Per-interface figures: frames taken, frames the kernel dropped (PACKET_STATISTICS)."""

    packets: int = 0
    kernel_packets: int = 0
    kernel_drops: int = 0


class PacketSocket:
    """One interface's AF_PACKET socket.

    Raises:
        OSError: no such interface, or no CAP_NET_RAW.
    """

    def __init__(self, interface: str, *, buffer_bytes: int) -> None:
        self.interface = interface
        self.counters = CaptureCounters()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            self._sock.bind((interface, ETH_P_ALL))
            index = socket.if_nametoindex(interface)
            mreq = _MREQ.pack(index, PACKET_MR_PROMISC, 0, b"")
            self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            self._sock.setblocking(False)  # noqa: FBT003  # socket API
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        """The socket's descriptor (for the event loop's reader)."""
        return self._sock.fileno()

    def read_batch(self, limit: int) -> list[PacketRecord]:
        """Up to `limit` frames waiting in the socket, stamped with their receive time."""
        records: list[PacketRecord] = []
        for _ in range(limit):
            try:
                data, addr = self._sock.recvfrom(SNAPLEN)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            self.counters.packets += 1
            records.append(
                PacketRecord(
                    ts_ns=time.time_ns(), linktype=LINKTYPE_ETHERNET, data=data, orig_len=len(data)
                )
            )
        return records

    def read_statistics(self) -> None:
        """Add the kernel's counts since the last read (the kernel resets them on each read)."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TP_STATS.size)
        packets, drops = _TP_STATS.unpack(raw)
        self.counters.kernel_packets += packets
        self.counters.kernel_drops += drops

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
