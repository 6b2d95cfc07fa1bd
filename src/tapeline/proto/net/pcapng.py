"""pcapng reader (a sans-IO framer) and the journal's pcapng writer.

Implements draft-ietf-opsawg-pcapng: §3.1 general block structure, §4.1 Section Header Block
(both byte orders, several sections per stream), §4.2 Interface Description Block with the
`if_tsresol` (§4.2, code 9) and `if_tsoffset` (code 14) options, §4.3 Enhanced Packet Block,
§4.4 Simple Packet Block and Appendix A Packet Block (obsolete, still read). Every other block
type is skipped by its length (§3.1: "a reader MUST skip unknown blocks").

Strategy: blocks are framed by their total length, bounded by `max_block_size`. A block is only
decoded once it is wholly buffered, so each decode works on one bounded slice and every length
inside it is checked against that slice. Leftover bytes at EOF are a truncated block and raise.
"""

import struct
from dataclasses import dataclass
from typing import Final

from tapeline.proto.errors import PcapFormatError
from tapeline.proto.net.capture import END_OF_CAPTURE, NEED_DATA, PacketRecord, ReaderEvent

BT_SHB: Final = 0x0A0D0D0A
BT_IDB: Final = 0x00000001
BT_PB: Final = 0x00000002
BT_SPB: Final = 0x00000003
BT_EPB: Final = 0x00000006
BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
SUPPORTED_MAJOR: Final = 1
OPT_ENDOFOPT: Final = 0
OPT_IF_TSRESOL: Final = 9
OPT_IF_TSOFFSET: Final = 14
DEFAULT_TSRESOL: Final = 6  # microseconds, §4.2
NANOSECOND_TSRESOL: Final = 9
TSRESOL_BASE2_FLAG: Final = 0x80
DEFAULT_MAX_BLOCK_SIZE: Final = 1 << 20
MIN_BLOCK_LENGTH: Final = 12
BLOCK_ALIGN: Final = 4
NS_PER_S: Final = 1_000_000_000
NS_DIGITS: Final = 9
SECTION_LENGTH_UNKNOWN: Final = 0xFFFFFFFFFFFFFFFF

_BLOCK_HEAD = {"<": struct.Struct("<II"), ">": struct.Struct(">II")}
_U32 = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
# §4.1 SHB body: byte-order magic, major, minor, section length.
_SHB_BODY = {"<": struct.Struct("<IHHQ"), ">": struct.Struct(">IHHQ")}
# §4.2 IDB body: LinkType, reserved, SnapLen.
_IDB_BODY = {"<": struct.Struct("<HHI"), ">": struct.Struct(">HHI")}
# §4.3 EPB body: interface id, timestamp upper, timestamp lower, captured len, original len.
_EPB_BODY = {"<": struct.Struct("<IIIII"), ">": struct.Struct(">IIIII")}
# Appendix A PB body: interface id (16 bit), drops count, timestamp upper/lower, lengths.
_PB_BODY = {"<": struct.Struct("<HHIIII"), ">": struct.Struct(">HHIIII")}
# §3.5 option header: code, length.
_OPTION = {"<": struct.Struct("<HH"), ">": struct.Struct(">HH")}
_I64 = {"<": struct.Struct("<q"), ">": struct.Struct(">q")}
_U8 = struct.Struct("B")


def _pad(length: int) -> int:
    return -length % BLOCK_ALIGN


@dataclass(frozen=True, slots=True, kw_only=True)
class _Interface:
    linktype: int
    snaplen: int
    tsresol: int
    tsoffset_s: int

    def to_ns(self, units: int) -> int:
        if self.tsresol & TSRESOL_BASE2_FLAG:
            ns = units * NS_PER_S >> (self.tsresol & ~TSRESOL_BASE2_FLAG)
        elif self.tsresol <= NS_DIGITS:
            ns = units * 10 ** (NS_DIGITS - self.tsresol)
        else:
            ns = units // 10 ** (self.tsresol - NS_DIGITS)
        return ns + self.tsoffset_s * NS_PER_S


class PcapngReader:
    """Streaming reader for pcapng files.

    Feed the file with `receive_data` (b"" for EOF) and drain `next_event()`.

    Args:
        max_block_size: Largest block total length accepted.
    """

    def __init__(self, *, max_block_size: int = DEFAULT_MAX_BLOCK_SIZE) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._max_block_size = max_block_size
        self._endian = "<"
        self._in_section = False
        self._interfaces: list[_Interface] = []

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the file; b"" marks the end of the file.

        Raises:
            PcapFormatError: Data arrived after EOF.
        """
        if self._eof:
            if data:
                raise PcapFormatError("data received after EOF")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_event(self) -> ReaderEvent:
        """Return the next packet record, `NEED_DATA` or `END_OF_CAPTURE`.

        Raises:
            PcapFormatError: The stream is not pcapng, is damaged or is truncated.
        """
        while True:
            block = self._next_block()
            if not isinstance(block, tuple):
                return block
            record = self._decode(*block)
            if record is not None:
                return record

    def _next_block(self) -> tuple[int, bytes] | ReaderEvent:
        buf = self._buffer
        if len(buf) < MIN_BLOCK_LENGTH:
            if not buf and self._eof:
                if not self._in_section:
                    raise PcapFormatError("truncated pcapng section header")
                return END_OF_CAPTURE
            return self._starved()
        (block_type,) = _U32["<"].unpack_from(buf)
        if block_type == BT_SHB:
            self._set_byte_order()
        elif not self._in_section:
            raise PcapFormatError(f"not a pcapng stream: first block type 0x{block_type:08x}")
        block_type, total = _BLOCK_HEAD[self._endian].unpack_from(buf)
        if total < MIN_BLOCK_LENGTH or total % BLOCK_ALIGN:
            raise PcapFormatError(f"bad block total length {total}")
        if total > self._max_block_size:
            raise PcapFormatError(f"block total length {total} exceeds max_block_size")
        if len(buf) < total:
            return self._starved()
        (trailer,) = _U32[self._endian].unpack_from(buf, total - 4)
        if trailer != total:
            raise PcapFormatError("block trailing length does not match")
        body = bytes(buf[8 : total - 4])
        del buf[:total]
        return block_type, body

    def _starved(self) -> ReaderEvent:
        if self._eof:
            raise PcapFormatError("truncated pcapng block")
        return NEED_DATA

    def _set_byte_order(self) -> None:
        for endian in ("<", ">"):
            (magic,) = _U32[endian].unpack_from(self._buffer, 8)
            if magic == BYTE_ORDER_MAGIC:
                self._endian = endian
                self._in_section = True
                self._interfaces = []
                return
        raise PcapFormatError("bad pcapng byte-order magic")

    def _decode(self, block_type: int, body: bytes) -> PacketRecord | None:
        if block_type == BT_SHB:
            self._decode_shb(body)
        elif block_type == BT_IDB:
            self._decode_idb(body)
        elif block_type == BT_EPB:
            return self._decode_epb(body)
        elif block_type == BT_SPB:
            return self._decode_spb(body)
        elif block_type == BT_PB:
            return self._decode_pb(body)
        return None

    def _decode_shb(self, body: bytes) -> None:
        shb = _SHB_BODY[self._endian]
        if len(body) < shb.size:
            raise PcapFormatError("section header block too short")
        _, major, _, _ = shb.unpack_from(body)
        if major != SUPPORTED_MAJOR:
            raise PcapFormatError(f"unsupported pcapng version {major}")

    def _decode_idb(self, body: bytes) -> None:
        idb = _IDB_BODY[self._endian]
        if len(body) < idb.size:
            raise PcapFormatError("interface description block too short")
        linktype, _, snaplen = idb.unpack_from(body)
        tsresol, tsoffset = DEFAULT_TSRESOL, 0
        for code, value in self._options(body, idb.size):
            if code == OPT_IF_TSRESOL and len(value) >= _U8.size:
                (tsresol,) = _U8.unpack_from(value)
            elif code == OPT_IF_TSOFFSET and len(value) >= _I64["<"].size:
                (tsoffset,) = _I64[self._endian].unpack_from(value)
        self._interfaces.append(
            _Interface(linktype=linktype, snaplen=snaplen, tsresol=tsresol, tsoffset_s=tsoffset)
        )

    def _options(self, body: bytes, offset: int) -> list[tuple[int, bytes]]:
        options: list[tuple[int, bytes]] = []
        option = _OPTION[self._endian]
        while offset + option.size <= len(body):
            code, length = option.unpack_from(body, offset)
            offset += option.size
            if code == OPT_ENDOFOPT:
                break
            if offset + length > len(body):
                raise PcapFormatError("option overruns its block")
            options.append((code, body[offset : offset + length]))
            offset += length + _pad(length)
        return options

    def _interface(self, interface_id: int) -> _Interface:
        if interface_id >= len(self._interfaces):
            raise PcapFormatError(f"packet names undefined interface {interface_id}")
        return self._interfaces[interface_id]

    def _packet(
        self, body: bytes, offset: int, interface_id: int, units: int, lengths: tuple[int, int]
    ) -> PacketRecord:
        caplen, orig_len = lengths
        iface = self._interface(interface_id)
        if offset + caplen > len(body):
            raise PcapFormatError("packet data overruns its block")
        return PacketRecord(
            ts_ns=iface.to_ns(units),
            linktype=iface.linktype,
            data=body[offset : offset + caplen],
            orig_len=orig_len,
            interface_id=interface_id,
        )

    def _decode_epb(self, body: bytes) -> PacketRecord:
        epb = _EPB_BODY[self._endian]
        if len(body) < epb.size:
            raise PcapFormatError("enhanced packet block too short")
        iface, ts_hi, ts_lo, caplen, orig_len = epb.unpack_from(body)
        return self._packet(body, epb.size, iface, ts_hi << 32 | ts_lo, (caplen, orig_len))

    def _decode_pb(self, body: bytes) -> PacketRecord:
        pb = _PB_BODY[self._endian]
        if len(body) < pb.size:
            raise PcapFormatError("packet block too short")
        iface, _, ts_hi, ts_lo, caplen, orig_len = pb.unpack_from(body)
        return self._packet(body, pb.size, iface, ts_hi << 32 | ts_lo, (caplen, orig_len))

    def _decode_spb(self, body: bytes) -> PacketRecord:
        # §4.4: the captured length is min(original length, SnapLen of interface 0), and the
        # block carries no timestamp; the record says so with ts_ns=None rather than guess.
        u32 = _U32[self._endian]
        if len(body) < u32.size:
            raise PcapFormatError("simple packet block too short")
        (orig_len,) = u32.unpack_from(body)
        iface = self._interface(0)
        caplen = orig_len if iface.snaplen == 0 else min(orig_len, iface.snaplen)
        caplen = min(caplen, len(body) - u32.size)
        return PacketRecord(
            ts_ns=None,
            linktype=iface.linktype,
            data=body[u32.size : u32.size + caplen],
            orig_len=orig_len,
        )


class PcapngWriter:
    """Serializer for little-endian pcapng with one nanosecond-resolution interface.

    `header()` starts a section (SHB + IDB); each `packet()` is one self-contained Enhanced
    Packet Block, so a journal that appends records one by one, or that was cut after any
    whole record, is still a valid pcapng file once its header is in front.
    """

    def header(self, linktype: int, *, snaplen: int = 0) -> bytes:
        """Return a Section Header Block followed by one Interface Description Block.

        Args:
            linktype: The LINKTYPE_* of every packet that follows (1 = Ethernet).
            snaplen: The interface SnapLen; 0 means unlimited.

        Returns:
            The bytes to put at the start of the file (or of a new section).
        """
        shb = _SHB_BODY["<"].pack(BYTE_ORDER_MAGIC, SUPPORTED_MAJOR, 0, SECTION_LENGTH_UNKNOWN)
        options = (
            _OPTION["<"].pack(OPT_IF_TSRESOL, 1)
            + _U8.pack(NANOSECOND_TSRESOL)
            + b"\0" * _pad(1)
            + _OPTION["<"].pack(OPT_ENDOFOPT, 0)
        )
        idb = _IDB_BODY["<"].pack(linktype, 0, snaplen) + options
        return _block(BT_SHB, shb) + _block(BT_IDB, idb)

    def packet(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> bytes:
        """Return one Enhanced Packet Block for interface 0.

        Args:
            ts_ns: Capture time in nanoseconds since the Unix epoch (0 <= ts_ns < 2**64).
            data: The captured bytes.
            orig_len: The length on the wire; defaults to `len(data)`.

        Returns:
            The EPB bytes.

        Raises:
            ValueError: `ts_ns` or `orig_len` does not fit the block's fields.
        """
        length = len(data) if orig_len is None else orig_len
        if not 0 <= ts_ns < 1 << 64:
            raise ValueError("ts_ns out of range for an EPB timestamp")
        if not len(data) <= length < 1 << 32:
            raise ValueError("orig_len out of range for an EPB")
        head = _EPB_BODY["<"].pack(0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), length)
        return _block(BT_EPB, head + data + b"\0" * _pad(len(data)))


def _block(block_type: int, body: bytes) -> bytes:
    total = len(body) + MIN_BLOCK_LENGTH
    return _BLOCK_HEAD["<"].pack(block_type, total) + body + _U32["<"].pack(total)
