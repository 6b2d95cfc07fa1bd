"""Finishing SIPREC journals left by a crash (`kill -9`, power cut) when the recorder starts.

A session journal holds, as pcapng packets: the INVITE as received, our SDP answer, then every
media datagram with its arrival time, and each in-dialog re-INVITE/UPDATE with our answer where
it happened (so added streams and pauses are rebuilt too). That is enough to rebuild the session
without the index: the offer and metadata give labels, codecs and the channel map; the answer
gives our ports; the packets are replayed through the same media pipeline; the call is filed
marked incomplete (it ends at the last sealed packet) through the one filing path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from tapeline.archive.core import Archive
from tapeline.archive.journal import read_journal
from tapeline.archive.parties import normalise_number
from tapeline.config import Config
from tapeline.daemon.siprec.core import (
    CallSession,
    describe,
    receive_keys,
    split_body,
    split_update,
)
from tapeline.daemon.siprec.filing import file_session
from tapeline.daemon.siprec.fork import map_fork
from tapeline.errors import TapelineError
from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession, MediaStream
from tapeline.media.srtp import CryptoSuite, SrtpReceiver
from tapeline.proto.errors import ParseError
from tapeline.proto.net import END_OF_CAPTURE, NEED_DATA, PacketDecoder, PcapngReader, UdpDatagram
from tapeline.proto.sdp import SessionDescription, parse_sdp
from tapeline.proto.sip import SipRequest, parse_datagram
from tapeline.proto.siprec import apply_update, parse_metadata

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


class _Replay:
    """Rebuilds one session from its journaled packets, in arrival order."""

    def __init__(self, session: CallSession, config: Config) -> None:
        self.session = session
        self.media = MediaSession(start=session.started)
        self.by_port: dict[int, MediaStream] = {}
        region = config.node.default_region
        self.lines = {line.number for line in config.lines}
        self.normalise = lambda aor: normalise_number(aor, region)

    def add_streams(self, indexes: range) -> None:
        session = self.session
        for index in indexes:
            codecs = session.codecs[index]
            if not codecs:
                continue
            formats = {
                pt: PayloadFormat(payload_type=pt, encoding_name=enc, clock_rate=rate)
                for pt, (enc, rate) in codecs.items()
            }
            keys = session.srtp[index] if index < len(session.srtp) else None
            receiver = SrtpReceiver(suite=CryptoSuite(keys[0]), key=keys[1]) if keys else None
            stream = self.media.add_stream(
                channel=session.channel_of(index), formats=formats, srtp=receiver
            )
            port = session.ports[index]
            self.by_port[port] = self.by_port[port + 1] = stream

    def describe(self, answer: SessionDescription) -> None:
        session = self.session
        described = describe(
            session.offer, answer, session.metadata, lines=self.lines, normalise=self.normalise
        )
        session.labels = described.labels
        session.codecs = described.codecs
        session.channel_map = described.channel_map or session.channel_map

    def reoffer(self, request: bytes, answer_bytes: bytes, at: float) -> None:
        """Apply a journaled in-dialog request and our answer to it."""
        session = self.session
        try:
            message = parse_datagram(request)
            if not isinstance(message, SipRequest):
                return
            sdp, raw = split_update(message)
            offer = parse_sdp(sdp) if sdp is not None else session.offer
            answer = parse_sdp(answer_bytes)
        except ParseError:
            return
        for body in raw:
            session.raw_metadata.append(body)
            try:
                update = parse_metadata(body)
            except ParseError:
                continue
            session.metadata = (
                update if session.metadata is None else apply_update(session.metadata, update)
            )
        known = len(session.ports)
        session.offer = offer
        session.srtp = receive_keys(offer)
        session.ports = [m.port for m in answer.media]
        self.describe(answer)
        session.track_pauses(offer, answer, at)
        self.add_streams(range(known, len(session.ports)))


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
        channel_map=None,
        port_base=min((p for p in ports if p), default=0),
        port_count=len(ports),
        labels=(),
        codecs=(),
        answer=b"",
        srtp=receive_keys(offer),
        ports=ports,
    )
    replay = _Replay(session, config)
    if metadata is None:
        session.fork = map_fork(
            invite,
            lines=replay.lines,
            normalise=replay.normalise,
            extra_headers=config.siprec.party_headers,
        )
    replay.describe(answer)
    session.track_pauses(offer, answer, session.started)
    replay.add_streams(range(len(ports)))
    sip_port = packets[0].dport
    last = session.started
    pending: bytes | None = None
    for packet in packets[2:]:
        at = packet.ts_ns / NS
        target = replay.by_port.get(packet.dport)
        if target is not None:
            last = at
            target.receive_datagram(packet.payload, last)
        elif pending is not None and packet.payload.startswith(b"v="):  # our SDP answer to it
            replay.reoffer(pending, packet.payload, at)
            pending = None
        elif packet.dport == sip_port:  # an in-dialog request (SBCs often use 5060 both ways)
            pending = packet.payload
    session.ended = last
    session.end_reason = "recovered after a crash"
    session.close_pauses(last)
    return session, replay.media


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
