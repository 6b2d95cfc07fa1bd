"""Capture files and packet layers: pcap/pcapng, link layers, IP, defragmentation, TCP streams.

Everything here is sans-IO: bytes and `now` in, frozen values and events out.
"""

from tapeline.proto.net.capture import END_OF_CAPTURE, NEED_DATA, PacketRecord, Sentinel
from tapeline.proto.net.decoder import (
    DecoderCounters,
    DecoderEvent,
    PacketDecoder,
    PacketDropped,
    UdpDatagram,
)
from tapeline.proto.net.defrag import Defragmenter, DropReason, FragmentsDropped, Reassembled
from tapeline.proto.net.frames import LinkPayload, decode_gre, decode_link
from tapeline.proto.net.ip import IPPacket, TcpSegment, parse_ipv4, parse_ipv6, parse_tcp, parse_udp
from tapeline.proto.net.pcap import PcapReader, PcapWriter
from tapeline.proto.net.pcapng import PcapngReader, PcapngWriter
from tapeline.proto.net.synthetic import build_udp_frame
from tapeline.proto.net.tcp import (
    CloseReason,
    FlowKey,
    StreamClosed,
    StreamData,
    StreamGap,
    TcpReassembler,
)

__all__ = [
    "END_OF_CAPTURE",
    "NEED_DATA",
    "CloseReason",
    "DecoderCounters",
    "DecoderEvent",
    "Defragmenter",
    "DropReason",
    "FlowKey",
    "FragmentsDropped",
    "IPPacket",
    "LinkPayload",
    "PacketDecoder",
    "PacketDropped",
    "PacketRecord",
    "PcapReader",
    "PcapWriter",
    "PcapngReader",
    "PcapngWriter",
    "Reassembled",
    "Sentinel",
    "StreamClosed",
    "StreamData",
    "StreamGap",
    "TcpReassembler",
    "TcpSegment",
    "UdpDatagram",
    "build_udp_frame",
    "decode_gre",
    "decode_link",
    "parse_ipv4",
    "parse_ipv6",
    "parse_tcp",
    "parse_udp",
]
