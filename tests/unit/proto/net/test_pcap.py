import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import ParseError, PcapFormatError
from tapeline.proto.net.capture import END_OF_CAPTURE, NEED_DATA, PacketRecord
from tapeline.proto.net.pcap import PcapReader, PcapWriter

RECORDS = [(1_700_000_000_123_456_789, b"\x01\x02\x03"), (1_700_000_001_000_000_001, b"x" * 60)]


def _file(*, nanosecond: bool = True) -> bytes:
    writer = PcapWriter(nanosecond=nanosecond)
    return writer.header(1) + b"".join(writer.packet(ts, data) for ts, data in RECORDS)


def _read(data: bytes, chunk: int | None = None) -> list[PacketRecord]:
    reader = PcapReader()
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


def test_round_trip_nanosecond() -> None:
    records = _read(_file())
    assert [(r.ts_ns, r.data, r.linktype, r.orig_len) for r in records] == [
        (ts, data, 1, len(data)) for ts, data in RECORDS
    ]


def test_microsecond_magic_scales_fraction_to_ns() -> None:
    records = _read(_file(nanosecond=False))
    assert [r.ts_ns for r in records] == [1_700_000_000_123_456_000, 1_700_000_001_000_000_000]


def test_big_endian_file() -> None:
    header = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113)
    record = struct.pack(">IIII", 10, 5, 2, 9) + b"ab"
    (rec,) = _read(header + record)
    assert (rec.ts_ns, rec.linktype, rec.data, rec.orig_len) == (10_000_005_000, 113, b"ab", 9)


def test_byte_at_a_time_equals_whole() -> None:
    assert _read(_file(), chunk=1) == _read(_file())


def test_header_properties_after_first_event() -> None:
    reader = PcapReader()
    assert (reader.linktype, reader.snaplen) == (None, None)
    reader.receive_data(_file())
    assert isinstance(reader.next_event(), PacketRecord)
    assert (reader.linktype, reader.snaplen) == (1, 262_144)


@pytest.mark.parametrize("cut", range(len(_file())))
def test_every_truncated_prefix_raises_pcap_format_error(cut: int) -> None:
    data = _file()[:cut]
    if cut in (24, 24 + 16 + 3):  # whole records: a clean end
        assert len(_read(data)) == (cut > 24)
        return
    with pytest.raises(PcapFormatError, match="truncated"):
        _read(data)


def test_bad_magic() -> None:
    with pytest.raises(PcapFormatError, match="not a pcap file: magic 0x0a0d0d0a"):
        _read(b"\x0a\x0d\x0d\x0a" + b"\0" * 20)


def test_unsupported_version() -> None:
    with pytest.raises(PcapFormatError, match="unsupported pcap version 3"):
        _read(struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 0, 1))


def test_record_larger_than_bound_is_rejected_before_buffering() -> None:
    reader = PcapReader(max_record_size=10)
    reader.receive_data(PcapWriter().header(1) + struct.pack("<IIII", 0, 0, 11, 11))
    with pytest.raises(PcapFormatError, match="record captured length 11 exceeds max_record_size"):
        reader.next_event()


def test_data_after_eof_is_an_error() -> None:
    reader = PcapReader()
    reader.receive_data(b"")
    reader.receive_data(b"")
    with pytest.raises(PcapFormatError, match="data received after EOF"):
        reader.receive_data(b"x")


def test_writer_orig_len() -> None:
    writer = PcapWriter()
    (rec,) = _read(writer.header(1) + writer.packet(5, b"abc", orig_len=1500))
    assert rec.orig_len == 1500


@settings(deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_records_or_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        _read(data)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**42), st.binary(max_size=64)), max_size=8))
def test_round_trip_property(items: list[tuple[int, bytes]]) -> None:
    writer = PcapWriter()
    data = writer.header(1) + b"".join(writer.packet(ts, d) for ts, d in items)
    assert [(r.ts_ns, r.data) for r in _read(data)] == items
