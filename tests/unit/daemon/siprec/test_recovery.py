"""Crash recovery rebuilds a session from its journal, in-dialog changes included."""

from __future__ import annotations

import struct
from pathlib import Path

from tapeline.config import parse_config
from tapeline.daemon.siprec.core import Opened, Send, SrsCore, Updated
from tapeline.daemon.siprec.recovery import rebuild
from tapeline.proto.net import PcapngWriter, build_udp_frame
from tests.conftest import config_dict
from tests.unit.daemon.siprec.test_core import SBC, _core, _final, _request, _siprec_body
from tests.unit.daemon.siprec.test_core_updates import PAUSED_OFFER, THREE_LINES, WALL

NS = 1_000_000_000
SIP_PORT = 5060


def _rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


class _Journal:
    """What the live service writes: SIP as UDP frames to/from our port, media to its ports."""

    def __init__(self) -> None:
        self.pcap = PcapngWriter()
        self.out = [self.pcap.header(1)]

    def sip(self, at: float, data: bytes, *, inbound: bool) -> None:
        src, dst = (SBC, ("192.0.2.1", SIP_PORT)) if inbound else (("192.0.2.1", SIP_PORT), SBC)
        frame = build_udp_frame(src[0], dst[0], src[1], dst[1], data)
        self.out.append(self.pcap.packet(int(at * NS), frame))

    def media(self, at: float, port: int, data: bytes) -> None:
        frame = build_udp_frame(SBC[0], "192.0.2.1", 7000, port, data)
        self.out.append(self.pcap.packet(int(at * NS), frame))


def _in_dialog(core: SrsCore, tag: str, cseq: int, now: float, body: str) -> tuple[bytes, bytes]:
    request = _request(
        "INVITE",
        body=body,
        content_type="application/sdp",
        to_tag=tag,
        cseq=cseq,
        branch=f"z9hG4bK{cseq}",
    )
    actions = core.receive_datagram(request, SBC, now, WALL)
    updated = next(a for a in actions if isinstance(a, Updated))
    return request, updated.answer


def test_a_journal_with_a_pause_and_an_added_stream_is_rebuilt(tmp_path: Path) -> None:
    core = _core()
    body, ctype = _siprec_body()
    t0 = 1_700_000_000.0
    invite = _request("INVITE", body=body, content_type=ctype)
    actions = core.receive_datagram(invite, SBC, t0, WALL)
    tag = _final([a for a in actions if isinstance(a, Send)]).to_addr.tag or ""
    session = next(a for a in actions if isinstance(a, Opened)).session
    journal = _Journal()
    journal.sip(t0, invite, inbound=True)
    journal.sip(t0, session.answer, inbound=False)
    for seq in range(50):  # 1 s on each stream
        journal.media(t0 + seq * 0.02, session.ports[0], _rtp(seq, 1))
        journal.media(t0 + seq * 0.02, session.ports[1], _rtp(seq, 2))
    pause, paused_answer = _in_dialog(core, tag, 2, t0 + 1, PAUSED_OFFER)
    journal.sip(t0 + 1, pause, inbound=True)
    journal.sip(t0 + 1, paused_answer, inbound=False)
    grow, grown_answer = _in_dialog(core, tag, 3, t0 + 2, THREE_LINES)
    journal.sip(t0 + 2, grow, inbound=True)
    journal.sip(t0 + 2, grown_answer, inbound=False)
    third_port = session.ports[2]
    for seq in range(50, 100):
        at = t0 + 2 + (seq - 50) * 0.02
        journal.media(at, session.ports[0], _rtp(seq, 1))
        journal.media(
            at, third_port, struct.pack("!BBHII", 0x80, 8, seq, seq * 160, 3) + b"\xd5" * 160
        )
    config = parse_config(config_dict(tmp_path), source="test")
    rebuilt = rebuild(b"".join(journal.out), config)
    assert rebuilt is not None
    recovered, media = rebuilt
    assert recovered.ports == session.ports  # the third m-line's port came from the re-offer
    spans = sorted((p.index, p.start, p.end) for p in recovered.pauses)
    assert spans == [(0, t0 + 1, t0 + 2), (1, t0 + 1, t0 + 2)]  # resumed by the third offer
    assert recovered.ended is not None
    result = media.finish(end=recovered.ended)
    received = [q.received for q in result.quality]
    assert received == [100, 50, 50]  # stream 3 exists only because the re-offer was replayed
