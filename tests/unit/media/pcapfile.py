"""A tiny classic-pcap/pcapng reader for corpus tests: Ethernet, IPv4, UDP only.

Deliberately separate from `tapeline.proto.net` so these tests do not depend on the code they
would otherwise be checking; it reads only what the rtpproxy corpus captures contain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus"
_PCAP_MAGIC_LE = 0xA1B2C3D4
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_EPB = 6
_ETHERTYPE_IPV4 = 0x0800
_UDP = 17


@dataclass(frozen=True, slots=True)
class Datagram:
    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def corpus_file(name: str) -> Path:
    return CORPUS.resolve() / name


def _frames(data: bytes) -> list[tuple[float, bytes]]:
    (magic,) = struct.unpack_from("<I", data)
    frames = []
    if magic == _PCAP_MAGIC_LE:
        offset = 24
        while offset + 16 <= len(data):
            seconds, micros, captured, _ = struct.unpack_from("<IIII", data, offset)
            frames.append((seconds + micros / 1e6, data[offset + 16 : offset + 16 + captured]))
            offset += 16 + captured
        return frames
    assert magic == _PCAPNG_SHB
    offset = 0
    while offset + 12 <= len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        if block_type == _PCAPNG_EPB:
            _, high, low, captured, _ = struct.unpack_from("<IIIII", data, offset + 8)
            body = data[offset + 28 : offset + 28 + captured]
            frames.append((((high << 32) | low) / 1e6, body))  # default if_tsresol: microseconds
        offset += length
    return frames


def read_udp(path: Path) -> list[Datagram]:
    datagrams = []
    for time, frame in _frames(path.read_bytes()):
        if struct.unpack_from("!H", frame, 12)[0] != _ETHERTYPE_IPV4:
            continue
        ip = frame[14:]
        header_length = (ip[0] & 0x0F) * 4
        if ip[9] != _UDP:
            continue
        source = ".".join(map(str, ip[12:16]))
        destination = ".".join(map(str, ip[16:20]))
        sport, dport, length, _ = struct.unpack_from("!HHHH", ip, header_length)
        payload = ip[header_length + 8 : header_length + length]
        datagrams.append(Datagram(time, (source, sport), (destination, dport), payload))
    return datagrams
