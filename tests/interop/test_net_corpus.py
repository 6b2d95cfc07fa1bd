"""proto.net against the public corpus, with tshark as the independent oracle.

The corpus lives beside the repository in `../shared/corpus` and is never copied in; each test
skips with the reason when a capture or tshark is missing.
"""

import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tapeline.proto.net.capture import END_OF_CAPTURE, PacketRecord
from tapeline.proto.net.decoder import PacketDecoder, PacketDropped, UdpDatagram
from tapeline.proto.net.pcap import PcapReader
from tapeline.proto.net.pcapng import PcapngReader, PcapngWriter
from tapeline.proto.net.synthetic import build_udp_frame
from tapeline.proto.net.tcp import FlowKey, StreamData, StreamGap

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
TSHARK = shutil.which("tshark")
CAPTURES = [
    "heplify__rtp_rtcp_sip_ipv4_udp.pcap",
    "heplify__sip_ipv4_tcp.pcap",
    "heplify__sip_ipv4_tcp_fragmented.pcap",
    "rtpproxy__G723_1.a.rtp.pcap",
    "rtpproxy__alice_srtp.pcap",
    "rtpproxy__bob_srtp.pcap",
    "rtpproxy__dups.a.rtp.pcap",
    "rtpproxy__sess6.a.rtp.pcap",
    "rtpproxy__weird.o.rtp.pcap",
    "rtpproxy__catch_dtmf.pcapng",
]
# SIP start lines at the beginning of a message: a Status-Line or a Request-Line (RFC 3261 §7.1).
START_LINE = re.compile(rb"(?m)^(SIP/2\.0 \d{3} [^\r\n]*|[A-Z]+ [^ \r\n]+ SIP/2\.0)\r$")


def _capture(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"public corpus file {path} is absent (see ../shared/corpus/SOURCES.md)")
    return path


def _tshark(*args: str) -> str:
    if TSHARK is None:
        pytest.fail("tshark is required (the independent oracle for these counts): run `make test`")
    done = subprocess.run([TSHARK, *args], capture_output=True, check=True, text=True)
    return done.stdout


def _records(path: Path, chunk: int = 65536) -> list[PacketRecord]:
    reader = PcapngReader() if path.suffix == ".pcapng" else PcapReader()
    records: list[PacketRecord] = []
    with path.open("rb") as f:
        while True:
            data = f.read(chunk)
            reader.receive_data(data)
            while isinstance(event := reader.next_event(), PacketRecord):
                records.append(event)
            if not data:
                assert event is END_OF_CAPTURE
                return records


def _decode(path: Path) -> tuple[PacketDecoder, list[object]]:
    decoder = PacketDecoder()
    events: list[object] = []
    for record in _records(path):
        decoder.receive_record(record)
        while not isinstance(event := decoder.next_event(), type(END_OF_CAPTURE)):
            events.append(event)
    decoder.flush()
    while not isinstance(event := decoder.next_event(), type(END_OF_CAPTURE)):
        events.append(event)
    return decoder, events


@pytest.mark.parametrize("name", CAPTURES)
def test_udp_and_tcp_packet_counts_match_tshark(name: str) -> None:
    path = _capture(name)
    frames = len(_tshark("-r", str(path), "-T", "fields", "-e", "frame.number").split())
    udp = len(_tshark("-r", str(path), "-Y", "udp", "-T", "fields", "-e", "frame.number").split())
    tcp = len(_tshark("-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "frame.number").split())
    decoder, events = _decode(path)
    assert decoder.counters.records == frames
    assert sum(isinstance(e, UdpDatagram) for e in events) == udp
    assert decoder.counters.tcp_segments == tcp
    assert not [e for e in events if isinstance(e, PacketDropped)]


@pytest.mark.parametrize(
    ("name", "port"),
    [("heplify__sip_ipv4_tcp.pcap", "5060"), ("heplify__sip_ipv4_tcp_fragmented.pcap", "6060")],
)
def test_tcp_sip_reassembly_finds_every_message_tshark_finds(name: str, port: str) -> None:
    path = _capture(name)
    fields = _tshark(
        "-r", str(path), "-d", f"tcp.port=={port},sip", "-Y", "sip", "-T", "fields",
        "-E", "occurrence=a", "-E", "aggregator=|",
        "-e", "sip.Request-Line", "-e", "sip.Status-Line",
    )  # fmt: skip
    expected = Counter(
        line.strip() for row in fields.splitlines() for line in re.split(r"[\t|]", row) if line
    )
    _, events = _decode(path)
    streams: defaultdict[FlowKey, bytearray] = defaultdict(bytearray)
    for event in events:
        if isinstance(event, StreamData):
            streams[event.flow] += event.data
    assert not [e for e in events if isinstance(e, StreamGap)]
    found = Counter(
        m.decode() for data in streams.values() for m in START_LINE.findall(bytes(data))
    )
    assert sum(expected.values()) > 0
    assert found == expected


def test_journal_of_synthetic_frames_is_read_by_tshark_with_good_checksums(
    tmp_path: Path,
) -> None:
    writer = PcapngWriter()
    journal = writer.header(1)
    journal += writer.packet(1, build_udp_frame("192.0.2.1", "192.0.2.2", 5060, 5060, b"a" * 33))
    journal += writer.packet(2, build_udp_frame("2001:db8::1", "2001:db8::2", 9, 5060, b"b"))
    path = tmp_path / "journal.pcapng"
    path.write_bytes(journal)
    out = _tshark(
        "-r", str(path), "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
        "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.checksum.status",
        "-e", "ip.checksum.status",
    )  # fmt: skip
    rows = [row.split("\t") for row in out.splitlines()]
    assert [row[0] for row in rows] == ["0.000000001", "0.000000002"]
    assert [row[1] for row in rows] == ["1", "1"]  # PROTO_CHECKSUM_E_GOOD
    assert rows[0][2] == "1"


@pytest.mark.parametrize("name", ["heplify__sip_ipv4_tcp.pcap", "rtpproxy__catch_dtmf.pcapng"])
def test_reading_one_byte_at_a_time_equals_reading_whole(name: str) -> None:
    path = _capture(name)
    assert _records(path, chunk=1) == _records(path)
