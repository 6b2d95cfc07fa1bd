"""AF_PACKET capture sockets (Linux, packet(7)): promiscuous, kernel-filtered, drops counted.

Frames are read from a TPACKET_V3 ring shared with the kernel (one mmap'd area of blocks; the
kernel fills a block with many frames and hands it over whole), not with one `recvfrom` per
frame: at tens of thousands of frames a second the system call per frame was the larger part of
the capture cost. The ring is `tap.buffer_mb` large (not limited by `net.core.rmem_max`, which
caps a socket buffer at a few MiB), so a burst or a slow second waits in memory instead of being
dropped. Should the kernel refuse the ring, the socket falls back to `recvfrom` (logged once).

The kernel filter (`tap.filter`, see `bpf.py`) is attached before the socket is bound, on a
socket opened for no protocol, so no unfiltered frame is ever queued. Packets the host itself
sends (`PACKET_OUTGOING`) are skipped: a mirror port only receives, and on `lo` every packet would
otherwise be seen twice (libpcap does the same). Each frame keeps the kernel's receive timestamp.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

from tapeline.daemon.tap.bpf import BpfProgram
from tapeline.proto.net import PacketRecord
from tapeline.proto.net.frames import LINKTYPE_ETHERNET

log = logging.getLogger(__name__)

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
SO_ATTACH_FILTER: Final = 26
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_RX_RING: Final = 5
PACKET_STATISTICS: Final = 6
PACKET_VERSION: Final = 10
TPACKET_V3: Final = 2
PACKET_OUTGOING: Final = 4
TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1
SNAPLEN: Final = 65535
# A block is handed over when full or after BLOCK_TIMEOUT_MS, whichever comes first, and a block
# handed over part-full wastes the rest of its space. 1 MiB blocks with a 20 ms timeout left 90 %
# of each block empty at 19,000 frames/s, so 64 MiB held barely a second and a short stall
# dropped frames; 256 KiB blocks fill within 50 ms at that rate. Latency does not matter here:
# the tracker runs on capture timestamps and its timers once a second.
BLOCK_SIZE: Final = 256 * 1024  # a power-of-two number of pages, larger than any frame
FRAME_SIZE: Final = 2048  # only sizes the ring's frame count for TPACKET_V3
BLOCK_TIMEOUT_MS: Final = 50
_TP_STATS: Final = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops
_TP_STATS_V3: Final = struct.Struct("III")  # ... and tp_freeze_q_cnt
_MREQ: Final = struct.Struct("iHH8s")  # struct packet_mreq
_REQ3: Final = struct.Struct("7I")  # struct tpacket_req3
_FPROG: Final = struct.Struct("HxxxxxxQ")  # struct sock_fprog on 64-bit: len, filter pointer
_BLOCK_HEADER: Final = struct.Struct("III")  # block_status, num_pkts, offset_to_first_pkt
_BLOCK_STATUS_AT: Final = 8  # struct tpacket_block_desc: version, offset_to_priv, then hdr.bh1
_FRAME_HEADER: Final = struct.Struct("IIIIIIH")  # next, sec, nsec, snaplen, len, status, mac
_TPACKET3_HDRLEN: Final = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
_SLL_PKTTYPE_AT: Final = _TPACKET3_HDRLEN + 10  # struct sockaddr_ll follows the header


@dataclass(slots=True)
class CaptureCounters:
    """Per-interface figures: frames taken, frames the kernel dropped (PACKET_STATISTICS)."""

    packets: int = 0
    kernel_packets: int = 0
    kernel_drops: int = 0


def parse_block(block: memoryview | bytes, records: list[PacketRecord]) -> int:
    """Append the frames of one TPACKET_V3 block (skipping our own outgoing); returns them all.

    `block` starts at a `struct tpacket_block_desc`; each frame is a `struct tpacket3_hdr`, a
    `struct sockaddr_ll`, then the frame at `tp_mac`, `tp_snaplen` bytes of an original `tp_len`.
    """
    count: int
    _status, count, offset = _BLOCK_HEADER.unpack_from(block, _BLOCK_STATUS_AT)
    for _ in range(count):
        next_offset, sec, nsec, snaplen, length, _st, mac = _FRAME_HEADER.unpack_from(block, offset)
        if block[offset + _SLL_PKTTYPE_AT] != PACKET_OUTGOING:
            start = offset + mac
            records.append(
                PacketRecord(
                    ts_ns=sec * 1_000_000_000 + nsec,
                    linktype=LINKTYPE_ETHERNET,
                    data=bytes(block[start : start + snaplen]),
                    orig_len=length,
                )
            )
        offset += next_offset
    return count


class PacketSocket:
    """One interface's AF_PACKET socket, with its kernel filter and receive ring.

    Raises:
        OSError: no such interface, or no CAP_NET_RAW.
    """

    def __init__(
        self, interface: str, *, buffer_bytes: int, bpf: BpfProgram | None = None,
        ring: bool = True,
    ) -> None:  # fmt: skip
        self.interface = interface
        self.counters = CaptureCounters()
        self._ring: mmap.mmap | None = None
        self._blocks = 0
        self._next_block = 0
        # Protocol 0: nothing is queued until bind(), by which time the filter is in place.
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            if bpf is not None and not bpf.matches_everything():
                self._attach(bpf)
            if ring:
                self._setup_ring(buffer_bytes)
            if self._ring is None:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            self._sock.bind((interface, ETH_P_ALL))
            index = socket.if_nametoindex(interface)
            mreq = _MREQ.pack(index, PACKET_MR_PROMISC, 0, b"")
            self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            self._sock.setblocking(False)  # noqa: FBT003  # socket API
        except OSError:
            self.close()
            raise

    @property
    def uses_ring(self) -> bool:
        """Whether frames come from the TPACKET_V3 ring (else one `recvfrom` each)."""
        return self._ring is not None

    def _attach(self, bpf: BpfProgram) -> None:
        filters = ctypes.create_string_buffer(bpf.instructions, len(bpf.instructions))
        program = _FPROG.pack(bpf.length, ctypes.addressof(filters))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)  # the kernel copies

    def _setup_ring(self, buffer_bytes: int) -> None:
        blocks = max(buffer_bytes // BLOCK_SIZE, 2)
        try:
            self._sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            request = _REQ3.pack(
                BLOCK_SIZE, blocks, FRAME_SIZE, BLOCK_SIZE * blocks // FRAME_SIZE,
                BLOCK_TIMEOUT_MS, 0, 0,
            )  # fmt: skip
            self._sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            self._ring = mmap.mmap(self._sock.fileno(), BLOCK_SIZE * blocks, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
        except OSError as exc:
            log.warning("no TPACKET_V3 ring on %s (%s): reading one frame per system call",
                        self.interface, exc)  # fmt: skip
            self._ring = None
            return
        self._blocks = blocks

    def fileno(self) -> int:
        """The socket's descriptor (for the event loop's reader)."""
        return self._sock.fileno()

    def read_batch(self, limit: int) -> list[PacketRecord]:
        """Frames waiting for us: whole ring blocks until at least `limit` frames, or `limit`."""
        if self._ring is None:
            return self._recv_batch(limit)
        ring, view = self._ring, memoryview(self._ring)
        records: list[PacketRecord] = []
        try:
            while len(records) < limit:
                base = self._next_block * BLOCK_SIZE
                (status,) = struct.unpack_from("I", ring, base + _BLOCK_STATUS_AT)
                if not status & TP_STATUS_USER:
                    break
                parse_block(view[base : base + BLOCK_SIZE], records)
                struct.pack_into("I", ring, base + _BLOCK_STATUS_AT, TP_STATUS_KERNEL)
                self._next_block = (self._next_block + 1) % self._blocks
        finally:
            view.release()
        self.counters.packets += len(records)
        return records

    def _recv_batch(self, limit: int) -> list[PacketRecord]:
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
        layout = _TP_STATS_V3 if self._ring is not None else _TP_STATS
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, layout.size)
        packets, drops = layout.unpack(raw)[:2]
        self.counters.kernel_packets += packets
        self.counters.kernel_drops += drops

    def close(self) -> None:
        """Unmap the ring and close the socket."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._sock.close()
