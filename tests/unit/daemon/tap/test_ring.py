"""Reading a TPACKET_V3 block laid out by hand as packet(7) and <linux/if_packet.h> describe it.

The layout here is written from the kernel's headers, not from `capture.py`'s constants, so a wrong
offset in the parser fails this test rather than agreeing with itself.
"""

from __future__ import annotations

import struct

from tapeline.daemon.tap.capture import PACKET_OUTGOING, TP_STATUS_USER, parse_block
from tapeline.proto.net import PacketRecord
from tapeline.proto.net.frames import LINKTYPE_ETHERNET

PACKET_HOST = 0
ALIGN = 16  # TPACKET_ALIGNMENT
TPACKET3_HDR = struct.Struct("=IIIIIIHHIIHH8x")  # struct tpacket3_hdr with hv1: 48 bytes
SOCKADDR_LL = struct.Struct("=HHiHBB8s")  # struct sockaddr_ll: 20 bytes
BLOCK_DESC = struct.Struct("=III" + "IIIQ" + "II" + "II")  # version, priv, status..ts_last


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _frame(data: bytes, *, sec: int, nsec: int, pkttype: int, orig_len: int | None = None) -> bytes:
    mac = _align(TPACKET3_HDR.size + SOCKADDR_LL.size)
    header = TPACKET3_HDR.pack(0, sec, nsec, len(data), orig_len or len(data), TP_STATUS_USER,
                               mac, mac, 0, 0, 0, 0)  # fmt: skip
    sll = SOCKADDR_LL.pack(17, 0x0300, 1, 1, pkttype, 6, b"\x02" * 6)
    body = header + sll
    body += b"\x00" * (mac - len(body)) + data
    return body + b"\x00" * (_align(len(body)) - len(body))


def _block(frames: list[bytes]) -> bytearray:
    first = _align(BLOCK_DESC.size)
    linked = []
    for index, frame in enumerate(frames):
        step = len(frame) if index + 1 < len(frames) else 0  # the kernel zeroes the last link
        linked.append(struct.pack("=I", step) + frame[4:])
    payload = b"".join(linked)
    desc = BLOCK_DESC.pack(1, first, TP_STATUS_USER, len(frames), first, first + len(payload), 9,
                           0, 0, 0, 0)  # fmt: skip
    return bytearray(desc + b"\x00" * (first - len(desc)) + payload)


def test_frames_are_copied_with_kernel_time_and_outgoing_skipped() -> None:
    frames = [
        _frame(b"A" * 60, sec=1_700_000_000, nsec=5, pkttype=PACKET_HOST),
        _frame(b"B" * 60, sec=1_700_000_000, nsec=6, pkttype=PACKET_OUTGOING),  # lo's own copy
        _frame(b"C" * 1000, sec=1_700_000_001, nsec=999_999_999, pkttype=3, orig_len=1500),
    ]
    block = _block(frames)
    records: list[PacketRecord] = []
    view = memoryview(block)
    assert parse_block(view, records) == 3  # every frame walked, ours skipped
    view.release()
    assert [r.data for r in records] == [b"A" * 60, b"C" * 1000]
    assert [r.ts_ns for r in records] == [1_700_000_000_000_000_005, 1_700_000_001_999_999_999]
    assert [r.orig_len for r in records] == [60, 1500]  # tp_len: before the snap length
    assert {r.linktype for r in records} == {LINKTYPE_ETHERNET}
    block[:] = b"\x00" * len(block)  # the kernel reuses the block: the records keep their bytes
    assert records[0].data == b"A" * 60
