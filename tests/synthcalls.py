"""Synthetic SIP + RTP calls written with the project's own pcap writer (tests and bench/).

Each call: INVITE with an SDP offer, 200 with the answer, ACK, 20 ms PCMU both ways for the whole
duration, then BYE. Calls overlap (all are up at once), each on its own media ports.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

from tapeline.proto.net import PcapWriter, build_udp_frame

NS: Final = 1_000_000_000
PTIME: Final = 0.02
SIP_A, SIP_B = 5060, 5062
LOOPBACK: Final = "127.0.0.1"


def _sdp(host: str, port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def call_id(call: int, host: str = LOOPBACK) -> str:
    """The Call-ID of call number `call`."""
    return f"bench-{call}@{host}"


def _sip(start: str, call: int, cseq: str, host: str, *, to_tag: bool, body: str = "") -> bytes:
    branch = f"z9hG4bK{call}{cseq.replace(' ', '')}"
    head = (
        f"{start}\r\nVia: SIP/2.0/UDP {host}:{SIP_A};branch={branch}\r\n"
        f"From: <sip:+4420712{call:05d}@a>;tag=a{call}\r\n"
        f"To: <sip:+4477009{call:05d}@b>{f';tag=b{call}' if to_tag else ''}\r\n"
        f"Call-ID: {call_id(call, host)}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def packets_per_stream(seconds: float) -> int:
    """RTP packets each direction of a call of `seconds` carries."""
    return int(seconds / PTIME)


def build_capture(
    path: Path, calls: int, seconds: float, *, a_host: str = LOOPBACK, b_host: str = LOOPBACK
) -> int:
    """Write `calls` concurrent calls from `a_host` to `b_host` to `path`; returns its packet count.

    SIP runs between ports 5060 and 5062; call `c` has media ports 20000+4c (A) and 40000+4c (B)
    and SSRCs 0x10000+c (A to B) and 0x20000+c (B to A).
    """
    writer = PcapWriter()
    out = [writer.header(1)]
    t0 = 1_700_000_000.0
    count = 0

    def put(t: float, sport: int, dport: int, payload: bytes, *, back: bool = False) -> None:
        """One datagram, A to B (or B to A when `back`)."""
        nonlocal count
        src, dst = (b_host, a_host) if back else (a_host, b_host)
        out.append(writer.packet(round(t * NS), build_udp_frame(src, dst, sport, dport, payload)))
        count += 1

    for c in range(calls):
        a_port, b_port = 20000 + 4 * c, 40000 + 4 * c
        t = t0 + c * 0.001
        invite = _sip("INVITE sip:b SIP/2.0", c, "1 INVITE", a_host, to_tag=False,
                      body=_sdp(a_host, a_port))  # fmt: skip
        answer = _sip("SIP/2.0 200 OK", c, "1 INVITE", a_host, to_tag=True,
                      body=_sdp(b_host, b_port))  # fmt: skip
        put(t, SIP_A, SIP_B, invite)
        put(t + 0.01, SIP_B, SIP_A, answer, back=True)
        put(t + 0.02, SIP_A, SIP_B, _sip("ACK sip:b SIP/2.0", c, "1 ACK", a_host, to_tag=True))
    start = t0 + calls * 0.001 + 0.05
    payload = bytes(range(160))
    ticks = packets_per_stream(seconds)
    for k in range(ticks):
        t = start + k * PTIME
        for c in range(calls):
            a_port, b_port = 20000 + 4 * c, 40000 + 4 * c
            rtp_a = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, k * 160, 0x10000 + c) + payload
            rtp_b = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, k * 160, 0x20000 + c) + payload
            put(t + c * 1e-5, a_port, b_port, rtp_a)
            put(t + c * 1e-5 + 5e-6, b_port, a_port, rtp_b, back=True)
    end = start + ticks * PTIME
    for c in range(calls):
        put(
            end + c * 0.001,
            SIP_A,
            SIP_B,
            _sip("BYE sip:b SIP/2.0", c, "2 BYE", a_host, to_tag=True),
        )
    path.write_bytes(b"".join(out))
    return count
