"""Finishing SIPREC journals left by a crash (`kill -9`, power cut) when the recorder starts.

A session journal holds, as pcapng packets: the INVITE as received, our SDP answer, then every
media datagram with its arrival time. That is enough to rebuild the session without the index:
the offer and metadata give labels, codecs and the channel map; the answer gives our ports; the
packets are replayed through the same media pipeline; the call is filed marked incomplete (it
ends at the last sealed packet) through the one filing path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from tapeline.archive.core import Archive
from tapeline.archive.journal import read_journal
from tapeline.archive.parties import normalise_number
from tapeline.config import Config
from tapeline.daemon.siprec.core import CallSession, describe, receive_keys, split_body
from tapeline.daemon.siprec.filing import file_session
from tapeline.errors import TapelineError
from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession, MediaStream
from tapeline.media.srtp import CryptoSuite, SrtpReceiver
from tapeline.proto.errors import ParseError
from tapeline.proto.net import END_OF_CAPTURE, NEED_DATA, PacketDecoder, PcapngReader, UdpDatagram
from tapeline.proto.sdp import parse_sdp
from tapeline.proto.sip import SipRequest, parse_datagram
from tapeline.proto.siprec import parse_metadata

log = logging.getLogger(__name__)
JOURNAL_GLOB = "siprec-*.tpj"
NS = 1_000_000_000


def _datagrams(data: bytes) -> list[UdpDatagram]:
    reader = PcapngReader()
    reader.receive_data(data)
    reader.receive_data(b"")
    decoder = PacketDecoder()
    out: list[UdpDatagram] = []
    while (record := reader.next_event()) not in (NEED_DATA, END_OF_CAPTURE):
        decoder.receive_record(record)
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, UdpDatagram):
                out.append(event)
    return out


def rebuild(data: bytes, config: Config) -> tuple[CallSession, MediaSession] | None:
    """The session and its replayed media from a journal's bytes, or None when unusable."""
    packets = _datagrams(data)
    if len(packets) < 2:  # noqa: PLR2004  # the INVITE and our answer come first
        return None
    try:
        invite = parse_datagram(packets[0].payload)
        if not isinstance(invite, SipRequest):
            return None
        sdp, raw_metadata = split_body(invite)
        offer = parse_sdp(sdp)
        answer = parse_sdp(packets[1].payload)
        metadata = parse_metadata(raw_metadata[0]) if raw_metadata else None
    except ParseError:
        return None
    region = config.node.default_region
    described = describe(
        offer,
        answer,
        metadata,
        lines={line.number for line in config.lines},
        normalise=lambda aor: normalise_number(aor, region),
    )
    srtp = receive_keys(offer)
    start_ns = packets[0].ts_ns
    ports = [m.port for m in answer.media]
    session = CallSession(
        call_id=invite.call_id,
        peer=(str(packets[0].src), packets[0].sport),
        trunk="(recovered)",
        started_wall=datetime.fromtimestamp(start_ns / NS, UTC),
        started=start_ns / NS,
        offer=offer,
        metadata=metadata,
        raw_metadata=raw_metadata,
        channel_map=described.channel_map,
        port_base=min((p for p in ports if p), default=0),
        port_count=len(ports),
        labels=described.labels,
        codecs=described.codecs,
        answer=b"",
    )
    media = MediaSession(start=session.started)
    by_port: dict[int, MediaStream] = {}
    for index, codecs in enumerate(described.codecs):
        if not codecs:
            continue
        formats = {
            pt: PayloadFormat(payload_type=pt, encoding_name=enc, clock_rate=rate)
            for pt, (enc, rate) in codecs.items()
        }
        keys = srtp[index]
        receiver = SrtpReceiver(suite=CryptoSuite(keys[0]), key=keys[1]) if keys else None
        stream = media.add_stream(channel=session.channel_of(index), formats=formats, srtp=receiver)
        by_port[ports[index]] = by_port[ports[index] + 1] = stream
    last = session.started
    for packet in packets[2:]:
        target = by_port.get(packet.dport)
        if target is not None:
            last = packet.ts_ns / NS
            target.receive_datagram(packet.payload, last)
    session.ended = last
    session.end_reason = "recovered after a crash"
    return session, media


def recover_spool(archive: Archive, config: Config) -> int:
    """File every SIPREC journal in the spool; returns how many were filed (blocking)."""
    filed = 0
    for path in sorted(Path(config.storage.spool).glob(JOURNAL_GLOB)):
        try:
            contents = read_journal(path, archive.vault.archive_key)
            rebuilt = rebuild(b"".join(contents.records), config)
            if rebuilt is None:
                log.error("journal %s has no usable session; kept for inspection", path)
                continue
            session, media = rebuilt
            assert session.ended is not None  # noqa: S101  # set by rebuild
            result = media.finish(end=session.ended)
            file_session(archive, config, session, result, incomplete=True)
        except TapelineError:
            log.exception("could not recover journal %s; kept", path)
            continue
        path.unlink()
        filed += 1
        log.info("recovered a call from its journal", extra={"call_id": session.call_id})
    return filed
