"""Classic libpcap file reader (a sans-IO framer) and writer.

Implements draft-ietf-opsawg-pcap §4 (file header: magic, version, snaplen, LinkType) and §5
(packet record header). Both byte orders and both timestamp precisions are accepted: magic
0xA1B2C3D4 means microseconds, 0xA1B23C4D nanoseconds (§4, "Magic Number").

Strategy: the reader keeps one bounded `bytearray`. A record whose captured length exceeds
`max_record_size` is a damaged file, not a reason to buffer without limit, and raises
`PcapFormatError`. Bytes left over at EOF are a truncated record and raise as well: a record
is never guessed.
"""

import struct
from typing import Final

from tapeline.proto.errors import PcapFormatError
from tapeline.proto.net.capture import END_OF_CAPTURE, NEED_DATA, PacketRecord, ReaderEvent

MAGIC_MICRO: Final = 0xA1B2C3D4
MAGIC_NANO: Final = 0xA1B23C4D
SUPPORTED_MAJOR: Final = 2
DEFAULT_MAX_RECORD_SIZE: Final = 256 * 1024
NS_PER_US: Final = 1_000
NS_PER_S: Final = 1_000_000_000
US_PER_S: Final = 1_000_000
DEFAULT_SNAPLEN: Final = 262_144

# §4 file header: magic, major, minor, reserved1 (thiszone), reserved2 (sigfigs), snaplen,
# LinkType and additional information (FCS bits live in the upper bits; we read the low 16).
_MAGIC = struct.Struct("<I")
_FILE_HEADER = {"<": struct.Struct("<IHHiIII"), ">": struct.Struct(">IHHiIII")}
# §5 record header: timestamp seconds, timestamp fraction, captured length, original length.
_RECORD_HEADER = {"<": struct.Struct("<IIII"), ">": struct.Struct(">IIII")}
FILE_HEADER_LENGTH: Final = 24
RECORD_HEADER_LENGTH: Final = 16
_LINKTYPE_MASK: Final = 0xFFFF


class PcapReader:
    """Streaming reader for classic pcap files.

    Feed the file with `receive_data` (b"" for EOF) and drain `next_event()`.

    Args:
        max_record_size: Largest captured length accepted for one record.
    """

    def __init__(self, *, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._max_record_size = max_record_size
        self._endian = "<"
        self._have_header = False
        self._nano = False
        self._linktype = 0
        self._snaplen = 0

    @property
    def linktype(self) -> int | None:
        """The file's LinkType, once the file header has been read."""
        return self._linktype if self._have_header else None

    @property
    def snaplen(self) -> int | None:
        """The file's snapshot length, once the file header has been read."""
        return self._snaplen if self._have_header else None

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
            PcapFormatError: The stream is not a pcap file, is damaged or is truncated.
        """
        if not self._have_header:
            if len(self._buffer) < FILE_HEADER_LENGTH:
                return self._starved("pcap file header")
            self._read_file_header()
        buf = self._buffer
        if len(buf) < RECORD_HEADER_LENGTH:
            if not buf and self._eof:
                return END_OF_CAPTURE
            return self._starved("pcap record header")
        ts_sec, ts_frac, incl_len, orig_len = _RECORD_HEADER[self._endian].unpack_from(buf)
        if incl_len > self._max_record_size:
            raise PcapFormatError(f"record captured length {incl_len} exceeds max_record_size")
        end = RECORD_HEADER_LENGTH + incl_len
        if len(buf) < end:
            return self._starved("pcap record data")
        data = bytes(buf[RECORD_HEADER_LENGTH:end])
        del buf[:end]
        frac_ns = ts_frac if self._nano else ts_frac * NS_PER_US
        return PacketRecord(
            ts_ns=ts_sec * NS_PER_S + frac_ns,
            linktype=self._linktype,
            data=data,
            orig_len=orig_len,
        )

    def _starved(self, what: str) -> ReaderEvent:
        if self._eof:
            raise PcapFormatError(f"truncated {what}")
        return NEED_DATA

    def _read_file_header(self) -> None:
        buf = self._buffer
        (magic,) = _MAGIC.unpack_from(buf)
        for endian in ("<", ">"):
            (value,) = struct.unpack_from(endian + "I", buf)
            if value in (MAGIC_MICRO, MAGIC_NANO):
                break
        else:
            raise PcapFormatError(f"not a pcap file: magic 0x{magic:08x}")
        _, major, _, _, _, snaplen, link = _FILE_HEADER[endian].unpack_from(buf)
        if major != SUPPORTED_MAJOR:
            raise PcapFormatError(f"unsupported pcap version {major}")
        self._endian = endian
        self._have_header = True
        self._nano = value == MAGIC_NANO
        self._snaplen = snaplen
        self._linktype = link & _LINKTYPE_MASK
        del buf[:FILE_HEADER_LENGTH]


class PcapWriter:
    """Serializer for classic little-endian pcap files with nanosecond timestamps.

    Args:
        nanosecond: Write the nanosecond magic (default) rather than the microsecond one.
    """

    def __init__(self, *, nanosecond: bool = True) -> None:
        self._nano = nanosecond

    def header(self, linktype: int, *, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
        """Return the 24-byte file header (§4) for `linktype`."""
        magic = MAGIC_NANO if self._nano else MAGIC_MICRO
        return _FILE_HEADER["<"].pack(magic, SUPPORTED_MAJOR, 4, 0, 0, snaplen, linktype)

    def packet(self, ts_ns: int, data: bytes, orig_len: int | None = None) -> bytes:
        """Return one packet record (§5); microsecond files truncate `ts_ns` to microseconds."""
        seconds, frac = divmod(ts_ns, NS_PER_S)
        if not self._nano:
            frac //= NS_PER_US
        length = len(data) if orig_len is None else orig_len
        return _RECORD_HEADER["<"].pack(seconds, frac, len(data), length) + data
