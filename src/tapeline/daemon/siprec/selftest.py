"""`tapeline selftest`: place a real SIPREC call at this appliance and check what it filed.

The call is built like an SBC's: an INVITE with SDP (labels 1 and 2) and RFC 7865 metadata naming
the first configured line as the party sending label 1, then two real-time G.711 streams carrying
440 Hz (label 1) and 1,000 Hz (label 2), then BYE. The test passes when the filed recording
decodes to 440 Hz on channel 0 (the recorded line) and 1,000 Hz on channel 1. Its record carries
the `selftest` tag and retention class, so it is hidden from searches and kept only days.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile

from tapeline.archive.core import Archive
from tapeline.archive.models import Interaction, Recording, StoredObject
from tapeline.config import Config
from tapeline.daemon.siprec.core import SELFTEST_HEADER
from tapeline.proto.sdp import parse_sdp
from tapeline.proto.sip import SipResponse, parse_datagram

RATE = 8000
PACKET_SAMPLES = 160
TONES = (440.0, 1000.0)
TOLERANCE_HZ = 20.0
_BIAS = 0x84
_CLIP = 32635


def ulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """G.711 µ-law encoding (ITU-T G.711, the classic segment search)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    encoded: bytes = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()
    return encoded


def _tone(freq: float, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@dataclass(frozen=True, slots=True)
class SelftestResult:
    """What the self-test saw."""

    ok: bool
    lines: list[str]


def _target(config: Config) -> tuple[str, int]:
    for entry in config.siprec.listen:
        scheme, _, rest = entry.partition(":")
        if scheme == "udp":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            return ("127.0.0.1" if host in {"0.0.0.0", ""} else host), int(port)  # noqa: S104
    raise ValueError("selftest needs a udp: entry in siprec.listen")


def _invite(config: Config, call_id: str, local: tuple[str, int], media_port: int) -> bytes:
    line = config.lines[0].number if config.lines else "+10000000001"
    metadata = (
        '<?xml version="1.0"?><recording xmlns="urn:ietf:params:xml:ns:recording:1">'
        "<datamode>complete</datamode>"
        f'<participant participant_id="p1"><nameID aor="sip:{line}@selftest.invalid"/>'
        "</participant>"
        '<participant participant_id="p2"><nameID aor="sip:selftest@selftest.invalid"/>'
        "</participant>"
        '<stream stream_id="s1"><label>1</label></stream>'
        '<stream stream_id="s2"><label>2</label></stream>'
        '<participantstreamassoc participant_id="p1"><send>s1</send></participantstreamassoc>'
        '<participantstreamassoc participant_id="p2"><send>s2</send></participantstreamassoc>'
        "</recording>"
    )
    host = local[0]
    sdp = f"v=0\r\no=selftest 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n" + "".join(
        f"m=audio {media_port + 2 * i} RTP/AVP 0\r\na=label:{i + 1}\r\na=sendonly\r\n"
        for i in range(2)
    )
    body = (
        f"--sb\r\nContent-Type: application/sdp\r\n\r\n{sdp}--sb\r\n"
        "Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n"
        f"\r\n{metadata}\r\n--sb--\r\n"
    ).encode()
    return _request(
        "INVITE", call_id, local, cseq=1, body=body, content_type="multipart/mixed;boundary=sb"
    )


def _request(  # noqa: PLR0913  # the parts of a request
    method: str,
    call_id: str,
    local: tuple[str, int],
    *,
    cseq: int,
    to_tag: str = "",
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    lines = [
        f"{method} sip:srs@{local[0]} SIP/2.0",
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex}",
        f"From: <sip:selftest@{local[0]}>;tag=selftest",
        f"To: <sip:srs@{local[0]}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"{SELFTEST_HEADER}: 1",
    ]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _final(sock: socket.socket) -> SipResponse:
    while True:
        reply = parse_datagram(sock.recv(65536))
        if isinstance(reply, SipResponse) and reply.status_code >= 200:  # noqa: PLR2004
            return reply


def place_call(config: Config, *, seconds: float = 2.0) -> str:
    """Place the test call; returns its Call-ID (blocking; real-time media)."""
    target = _target(config)
    call_id = f"selftest-{uuid.uuid4()}"
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media,
    ):
        sock.bind((target[0], 0))
        media.bind((target[0], 0))
        sock.settimeout(10)
        local = sock.getsockname()
        sock.sendto(_invite(config, call_id, local, media.getsockname()[1]), target)
        ok = _final(sock)
        if ok.status_code != 200:  # noqa: PLR2004
            raise RuntimeError(f"the recorder answered {ok.status_code} {ok.reason}")
        to_tag = ok.to_addr.tag or ""
        sock.sendto(_request("ACK", call_id, local, cseq=1, to_tag=to_tag), target)
        ports = [m.port for m in parse_sdp(ok.body).media]
        payloads = [ulaw_encode(_tone(freq, seconds)) for freq in TONES]
        ssrcs = [int.from_bytes(os.urandom(4), "big") for _ in TONES]
        due = time.monotonic()
        for index in range(len(payloads[0]) // PACKET_SAMPLES):
            due += PACKET_SAMPLES / RATE
            time.sleep(max(0.0, due - time.monotonic()))  # real-time media
            for stream, port in enumerate(ports):
                chunk = payloads[stream][index * PACKET_SAMPLES : (index + 1) * PACKET_SAMPLES]
                header = struct.pack(
                    "!BBHII", 0x80, 0, index, index * PACKET_SAMPLES, ssrcs[stream]
                )
                media.sendto(header + chunk, (target[0], port))
        sock.sendto(_request("BYE", call_id, local, cseq=2, to_tag=to_tag), target)
        if _final(sock).status_code != 200:  # noqa: PLR2004
            raise RuntimeError("the recorder did not accept the BYE")
    return call_id


def _dominant(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def check_filed(archive: Archive, call_id: str, *, timeout: float = 30.0) -> SelftestResult:
    """Wait for the call's record and check its channels."""
    deadline = time.monotonic() + timeout
    row = None
    obj = None
    while row is None and time.monotonic() < deadline:
        with archive.index.read() as session:
            row = session.query(Interaction).filter_by(sip_call_id=call_id).one_or_none()
            if row is None:
                time.sleep(0.2)
                continue
            rec = session.get(Recording, row.id)
            obj = session.get(StoredObject, rec.object_id) if rec else None
    if row is None:
        return SelftestResult(
            ok=False, lines=[f"call {call_id} was not filed within {timeout:.0f} s"]
        )
    lines = [f"filed as {row.id} ({row.kind}, tags {row.tags}, class {row.retention_class})"]
    if obj is None or obj.wrapped_key is None:
        return SelftestResult(ok=False, lines=[*lines, f"no recording: {row.outcome}"])
    audio = archive.vault.load(obj.id, obj.wrapped_key, obj.sha256)
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    ok = rate == RATE
    for channel, expected in enumerate(TONES):
        seen = _dominant(frames[:, channel])
        good = abs(seen - expected) <= TOLERANCE_HZ
        ok = ok and good
        lines.append(
            f"channel {channel}: {seen:.0f} Hz (expected {expected:.0f} Hz) "
            f"{'ok' if good else 'WRONG'}"
        )
    return SelftestResult(ok=ok, lines=lines)
