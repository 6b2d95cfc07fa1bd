"""Calls the corpus lacks, in captures we write ourselves, through the `import-pcap` path.

QinQ, ERSPAN, fragmented INVITEs over IPv4 and IPv6, reordered RTP and an SSRC change.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tapeline.daemon.tap.offline import track
from tapeline.daemon.tap.tracker import CallTracker, Side, TapCall
from tapeline.proto.net import PcapWriter, build_udp_frame
from tests.unit.proto.net.builders import ether, ipv4, ipv6, ipv6_fragment, udp

V4 = ("192.0.2.10", "198.51.100.20")
V6 = ("2001:db8::10", "2001:db8::20")
PACKETS = 50
MTU_PAYLOAD = 1480  # a multiple of 8, as fragment offsets must be


def _sdp(addr: str, port: int) -> str:
    family = "IP6" if ":" in addr else "IP4"
    return (
        f"v=0\r\no=- 1 1 IN {family} {addr}\r\ns=-\r\nc=IN {family} {addr}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _sip(start: str, cseq: str, *, body: str = "", pad: int = 0, to_tag: bool = True) -> bytes:
    head = (
        f"{start}\r\nVia: SIP/2.0/UDP host;branch=z9hG4bK{cseq.replace(' ', '')}\r\n"
        f"From: <sip:+442071230001@a>;tag=a1\r\nTo: <sip:+447700900123@b>"
        f"{';tag=b1' if to_tag else ''}\r\nCall-ID: encap-1\r\nCSeq: {cseq}\r\n"
    )
    if pad:
        head += f"X-Pad: {'p' * pad}\r\n"  # pushes the INVITE past one MTU: it must fragment
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def _rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xd5" * 160


Frames = Callable[[tuple[str, int], tuple[str, int], bytes], list[bytes]]


def _plain_v4(vlans: tuple[int, ...], tpid: int) -> Frames:
    def frames(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> list[bytes]:
        data = udp(payload, src[1], dst[1])
        out = []
        for i in range(0, len(data), MTU_PAYLOAD):
            more = i + MTU_PAYLOAD < len(data)
            part = ipv4(data[i : i + MTU_PAYLOAD], src=src[0], dst=dst[0], ident=len(payload),
                        offset=i, more=more)  # fmt: skip
            out.append(ether(0x0800, part, vlans, tpid))
        return out[::-1]  # fragments arrive last first: reassembly must not care

    return frames


def _v6(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> list[bytes]:
    data = udp(payload, src[1], dst[1])
    if len(data) <= MTU_PAYLOAD:
        return [ether(0x86DD, ipv6(data, src=src[0], dst=dst[0]))]
    out = []
    for i in range(0, len(data), MTU_PAYLOAD):
        more = i + MTU_PAYLOAD < len(data)
        frag = ipv6_fragment(data[i : i + MTU_PAYLOAD], offset=i, more=more, ident=len(payload))
        out.append(ether(0x86DD, ipv6(frag, next_header=44, src=src[0], dst=dst[0])))
    return out


def _erspan(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> list[bytes]:
    inner = build_udp_frame(src[0], dst[0], src[1], dst[1], payload)
    gre = struct.pack("!HHI", 0x1000, 0x88BE, 1) + b"\0" * 8 + inner  # ERSPAN type II
    return [ether(0x0800, ipv4(gre, proto=47, src="10.9.9.1", dst="10.9.9.2"))]


CASES: dict[str, tuple[Frames, tuple[str, str]]] = {
    "qinq_fragmented_ipv4_invite": (_plain_v4((100, 200), 0x88A8), V4),
    "ipv6_fragmented_invite": (_v6, V6),
    "erspan_ii": (_erspan, V4),
}


def _capture(path: Path, frames: Frames, hosts: tuple[str, str]) -> None:
    a, b = hosts
    writer = PcapWriter()
    out = [writer.header(1)]
    t = 1_700_000_000 * 10**9

    def put(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        nonlocal t
        t += 1_000_000
        out.extend(writer.packet(t, frame) for frame in frames(src, dst, payload))

    invite = _sip("INVITE sip:b SIP/2.0", "1 INVITE", body=_sdp(a, 4000), pad=2000, to_tag=False)
    put((a, 5060), (b, 5060), invite)
    put((b, 5060), (a, 5060), _sip("SIP/2.0 200 OK", "1 INVITE", body=_sdp(b, 6000)))
    put((a, 5060), (b, 5060), _sip("ACK sip:b SIP/2.0", "1 ACK"))
    order = list(range(PACKETS))
    order[10], order[11], order[12] = order[12], order[10], order[11]  # reordered in the network
    for seq in order:
        put((a, 4000), (b, 6000), _rtp(seq, 0xAAAA))
        # the callee's phone restarts its stream halfway (new SSRC, e.g. after a transfer)
        put((b, 6000), (a, 4000), _rtp(seq, 0xBBBB if seq < PACKETS // 2 else 0xCCCC))
    put((a, 5060), (b, 5060), _sip("BYE sip:b SIP/2.0", "2 BYE"))
    path.write_bytes(b"".join(out))


@pytest.mark.parametrize("case", sorted(CASES))
def test_call_through_encapsulation(case: str, tmp_path: Path) -> None:
    frames, hosts = CASES[case]
    path = tmp_path / f"{case}.pcap"
    _capture(path, frames, hosts)
    calls: list[TapCall] = []
    tracker = CallTracker()
    track([path], tracker, lambda event: calls.append(event.call))
    (call,) = calls
    assert call.call_id == "encap-1"
    assert call.end_reason == "bye"
    assert call.rtp_packets == {Side.CALLER: PACKETS, Side.CALLEE: PACKETS}
    result = call.media.finish(end=call.ended or call.last_seen)
    by_channel = {q.channel: q for q in result.quality}
    caller, callee = (
        by_channel[call.channel_of(Side.CALLER)],
        by_channel[call.channel_of(Side.CALLEE)],
    )
    assert (caller.received, caller.lost, caller.undecodable) == (PACKETS, 0, 0)
    assert callee.ssrcs == (0xBBBB, 0xCCCC)
    assert callee.received == PACKETS
    assert tracker.counters.sip_malformed == 0
