import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import ParseError, PcapFormatError
from tapeline.proto.net.capture import END_OF_CAPTURE, NEED_DATA, PacketRecord
from tapeline.proto.net.pcapng import PcapngReader, PcapngWriter

TS = 1_700_000_000_123_456_789


def _block(endian: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(endian + "II", block_type, total) + body + struct.pack(endian + "I", total)


def _shb(endian: str = "<") -> bytes:
    return _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(endian: str = "<", linktype: int = 1, snaplen: int = 0, options: bytes = b"") -> bytes:
    return _block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options)


def _opt(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _epb(endian: str, iface: int, units: int, data: bytes, orig_len: int | None = None) -> bytes:
    head = struct.pack(
        endian + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), orig_len or len(data)
    )
    return _block(endian, 6, head + data)


def _read(data: bytes, chunk: int | None = None) -> list[PacketRecord]:
    reader = PcapngReader()
    records: list[PacketRecord] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        reader.receive_data(data[i : i + step])
        while isinstance(event := reader.next_event(), PacketRecord):
            records.append(event)
        assert event is NEED_DATA
    reader.receive_data(b"")
    while isinstance(event := reader.next_event(), PacketRecord):
        records.append(event)
    assert event is END_OF_CAPTURE
    return records


def _journal() -> bytes:
    writer = PcapngWriter()
    return writer.header(1) + writer.packet(TS, b"abcde") + writer.packet(TS + 1, b"", orig_len=60)


def test_writer_round_trip() -> None:
    records = _read(_journal())
    assert records == [
        PacketRecord(ts_ns=TS, linktype=1, data=b"abcde", orig_len=5),
        PacketRecord(ts_ns=TS + 1, linktype=1, data=b"", orig_len=60),
    ]


def test_byte_at_a_time_equals_whole() -> None:
    assert _read(_journal(), chunk=1) == _read(_journal())


def test_journal_cut_after_any_whole_record_is_readable() -> None:
    writer = PcapngWriter()
    data = writer.header(1)
    for i in range(3):
        data += writer.packet(TS + i, bytes([i]) * 7)
        assert len(_read(data)) == i + 1


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=70)), max_size=6))
def test_round_trip_property(items: list[tuple[int, bytes]]) -> None:
    writer = PcapngWriter()
    data = writer.header(228) + b"".join(writer.packet(ts, d) for ts, d in items)
    assert [(r.ts_ns, r.data, r.linktype) for r in _read(data)] == [(t, d, 228) for t, d in items]


def test_writer_rejects_out_of_range_values() -> None:
    writer = PcapngWriter()
    with pytest.raises(ValueError, match="ts_ns out of range for an EPB timestamp"):
        writer.packet(-1, b"")
    with pytest.raises(ValueError, match="orig_len out of range for an EPB"):
        writer.packet(0, b"abc", orig_len=2)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_both_byte_orders_default_microsecond_resolution(endian: str) -> None:
    data = _shb(endian) + _idb(endian, linktype=113) + _epb(endian, 0, 1_500_000, b"xy", 99)
    (rec,) = _read(data)
    assert (rec.ts_ns, rec.linktype, rec.data, rec.orig_len) == (1_500_000_000, 113, b"xy", 99)


def test_tsresol_base2_and_tsoffset() -> None:
    options = _opt("<", 9, bytes([0x80 | 10])) + _opt("<", 14, struct.pack("<q", 100))
    data = _shb() + _idb(options=options + b"\0\0\0\0") + _epb("<", 0, 3 * 1024, b"")
    (rec,) = _read(data)
    assert rec.ts_ns == 100 * 10**9 + 3 * 10**9


def test_tsresol_finer_than_nanoseconds_truncates() -> None:
    data = _shb() + _idb(options=_opt("<", 9, bytes([12]))) + _epb("<", 0, 5_000_999, b"")
    (rec,) = _read(data)
    assert rec.ts_ns == 5_000


def test_multiple_sections_reset_interfaces_and_byte_order() -> None:
    data = (
        _shb("<") + _idb("<", 1) + _epb("<", 0, 1, b"a")
        + _shb(">") + _idb(">", 101) + _idb(">", 228) + _epb(">", 1, 2, b"b")
    )  # fmt: skip
    first, second = _read(data)
    assert (first.linktype, first.interface_id, first.data) == (1, 0, b"a")
    assert (second.linktype, second.interface_id, second.data) == (228, 1, b"b")


def test_unknown_blocks_are_skipped() -> None:
    data = _shb() + _block("<", 0x0BAD, b"whatever") + _idb() + _block("<", 5, b"stats")
    data += _epb("<", 0, 7, b"pkt")
    assert [r.data for r in _read(data)] == [b"pkt"]


def test_simple_packet_block_has_no_timestamp_and_obeys_snaplen() -> None:
    spb = _block("<", 3, struct.pack("<I", 10) + b"0123456789")
    (rec,) = _read(_shb() + _idb(snaplen=4) + spb)
    assert (rec.ts_ns, rec.data, rec.orig_len) == (None, b"0123", 10)


def test_obsolete_packet_block() -> None:
    pb = _block("<", 2, struct.pack("<HHIIII", 0, 0, 0, 42, 2, 2) + b"hi")
    (rec,) = _read(_shb() + _idb() + pb)
    assert (rec.ts_ns, rec.data) == (42_000, b"hi")


@pytest.mark.parametrize("cut", range(len(_journal())))
def test_every_truncated_prefix_raises_pcap_format_error(cut: int) -> None:
    writer = PcapngWriter()
    boundaries = {len(writer.header(1)), len(writer.header(1) + writer.packet(TS, b"abcde"))}
    data = _journal()[:cut]
    if cut in boundaries or cut == len(writer.header(1)) - 32:  # SHB alone is a valid file
        _read(data)
        return
    with pytest.raises(PcapFormatError, match="truncated"):
        _read(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_idb(), "not a pcapng stream: first block type 0x00000001"),
        (_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x01020304, 1, 0, -1)), "byte-order magic"),
        (_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)), "version 2"),
        (_shb()[:4] + struct.pack("<I", 13) + _shb()[8:], "bad block total length 13"),
        (_shb() + _block("<", 6, b"\0" * 20)[:-4] + b"\0\0\0\0", "trailing length"),
        (_shb() + _epb("<", 0, 0, b""), "undefined interface 0"),
        (_shb() + _block("<", 1, b"\0\0"), "interface description block too short"),
        (_shb() + _idb() + _block("<", 6, b"\0" * 8), "enhanced packet block too short"),
        (_shb() + _idb() + _block("<", 2, b"\0" * 8), "packet block too short"),
        (_shb() + _idb() + _block("<", 3, b""), "simple packet block too short"),
        (_block("<", 0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D)), "section header block too short"),
        (_shb() + _idb(options=struct.pack("<HH", 9, 40)), "option overruns its block"),
        (_shb() + _idb() + _block("<", 6, struct.pack("<IIIII", 0, 0, 0, 9, 9)), "overruns"),
    ],
)
def test_damaged_streams(data: bytes, message: str) -> None:
    with pytest.raises(PcapFormatError, match=message):
        _read(data)


def test_block_larger_than_bound() -> None:
    reader = PcapngReader(max_block_size=64)
    reader.receive_data(_shb() + _epb("<", 0, 0, b"x" * 100))
    with pytest.raises(PcapFormatError, match="block total length 132 exceeds max_block_size"):
        reader.next_event()


def test_data_after_eof_is_an_error() -> None:
    reader = PcapngReader()
    reader.receive_data(b"")
    reader.receive_data(b"")
    with pytest.raises(PcapFormatError, match="data received after EOF"):
        reader.receive_data(b"x")


@settings(deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_records_or_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        _read(data)


@settings(deadline=None)
@given(st.data())
def test_mutated_journal_gives_records_or_parse_error(data: st.DataObject) -> None:
    raw = bytearray(_journal())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ParseError):
        _read(bytes(raw))
