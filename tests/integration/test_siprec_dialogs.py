"""SIPp as the SBC beyond the basic call, and TLS from a Python `ssl` client.

TCP, OPTIONS, CANCEL, re-INVITE with a metadata update and pause/resume, a plain fork INVITE,
and the Cisco and Sonus corpus bodies inside real INVITEs; TLS with client certificates from a
Python `ssl` client (Debian's SIPp has no TLS). Scenarios are written per test from small
templates below, so each shows in one place what the SRC sends. Audio is checked sample-exact
against sox's decode of the payload SIPp sent.
"""

from __future__ import annotations

import io
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import soundfile
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tapeline.archive.core import Archive
from tapeline.archive.nodes import active_alarms
from tapeline.archive.reading import show
from tapeline.config import load_config
from tapeline.proto.net import PcapWriter, build_udp_frame
from tapeline.proto.sip import NEED_DATA, SipFramer, SipResponse, parse_datagram
from tapeline.tlscert import generate_self_signed
from tests.conftest import CORPUS, config_dict, free_port
from tests.integration.test_mqtt_tls import _ca, _name
from tests.integration.test_siprec_sipp import (
    PACKET_MS,
    REVIEWER,
    _rtp,
    _sox_decode,
    _start_recorder,
    _ulaw_tone,
    _wait_filed,
)
from tests.tomlwriter import dumps
from tests.unit.daemon.siprec.test_core import _request, _siprec_body

pytestmark = pytest.mark.slow

SDP = """v=0
o=src 2890844526 2890844526 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:1
a={direction}
m=audio [media_port+2] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:2
a={direction}
"""
METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
<datamode>complete</datamode>
<session session_id="c2Vzc2lvbjE="><sipSessionID>[call_id]</sipSessionID></session>
<participant participant_id="cGFydDE=">
<nameID aor="sip:+442071230001@bank.example"><name>Alice Trader</name></nameID></participant>
<participant participant_id="cGFydDI=">
<nameID aor="sip:+447700900123@carrier.example"/></participant>
<stream stream_id="c3RyMQ==" session_id="c2Vzc2lvbjE="><label>1</label></stream>
<stream stream_id="c3RyMg==" session_id="c2Vzc2lvbjE="><label>2</label></stream>
<participantstreamassoc participant_id="cGFydDE=">
<send>c3RyMQ==</send><recv>c3RyMg==</recv></participantstreamassoc>
<participantstreamassoc participant_id="cGFydDI=">
<send>c3RyMg==</send><recv>c3RyMQ==</recv></participantstreamassoc>
</recording>"""
JOINED = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
<datamode>partial</datamode>
<participant participant_id="cGFydDM=">
<nameID aor="sip:+447700900777@carrier.example">
<name>Joined Colleague</name></nameID></participant>
<participantsessionassoc participant_id="cGFydDM=" session_id="c2Vzc2lvbjE="/>
</recording>"""
DIALOG = """From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:srs@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]"""


def _multipart(*parts: tuple[str, str]) -> str:
    out = []
    for content_type, body in parts:
        disposition = (
            "\nContent-Disposition: recording-session" if "rs-metadata" in content_type else ""
        )
        out.append(f"--b\nContent-Type: {content_type}{disposition}\n\n{body}\n")
    return "".join(out) + "--b--\n"


def _send(method: str, cseq: int, body: str = "", ctype: str = "", extra: str = "") -> str:
    """A request of the scenario; `[branch]` differs per message, as RFC 3261 wants."""
    headers = f"Content-Type: {ctype}\n      " if body else ""
    head = DIALOG.replace("[peer_tag_param]", "") if method == "INVITE" and cseq == 1 else DIALOG
    return f"""  <send retrans="500">
    <![CDATA[

      {method} sip:srs@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {head}
      CSeq: {cseq} {method}
      Contact: <sip:src@[local_ip]:[local_port]>;+sip.src
      Max-Forwards: 70
      {extra}{headers}Content-Length: [len]

{body}
    ]]>
  </send>
"""


def _ack(cseq: int) -> str:
    return f"""  <send>
    <![CDATA[

      ACK sip:srs@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {DIALOG}
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def _expect(status: int, *patterns: str, optional: bool = False) -> str:
    checks = "".join(
        f'<ereg regexp="{p}" search_in="msg" check_it="true" assign_to="v{abs(hash(p))}"/>'
        for p in patterns
    )
    action = f"<action>{checks}</action>" if checks else ""
    flag = ' optional="true"' if optional else ""
    return f'  <recv response="{status}"{flag}>{action}</recv>\n'


def _play(pcap: str) -> str:
    return f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'


def _pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def _scenario(path: Path, *steps: str) -> Path:
    """Write the scenario; every checked regexp variable is referenced (SIPp insists)."""
    variables = sorted({m for step in steps for m in re.findall(r'assign_to="(v[0-9]+)"', step)})
    reference = f'  <Reference variables="{",".join(variables)}"/>\n' if variables else ""
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        '<scenario name="tapeline">\n' + "".join(steps) + reference + "</scenario>\n"
    )
    return path


def _write_pcap(path: Path, streams: list[bytes], *, seq0: int = 0, ts0: int = 0) -> None:
    """Two RTP streams of 20 ms PCMU packets to the answer's ports (6000 and 6002 offsets)."""
    writer = PcapWriter()
    out = [writer.header(1)]
    step = 8 * PACKET_MS
    t0 = 1_700_000_000 * 10**9
    for index in range(len(streams[0]) // step):
        for number, payload in enumerate(streams):
            chunk = payload[index * step : (index + 1) * step]
            packet = _rtp(seq0 + index, ts0 + index * step, 0x1000 + number, chunk)
            frame = build_udp_frame(
                "127.0.0.1", "127.0.0.1", 7000 + 2 * number, 6000 + 2 * number, packet
            )
            out.append(writer.packet(t0 + index * PACKET_MS * 10**6 + number * 1000, frame))
    path.write_bytes(b"".join(out))


@dataclass(frozen=True, slots=True)
class Recorder:
    config: Path
    udp: int
    tcp: int


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """A recorder with UDP and TCP SIPREC listeners, a loopback trunk and two lines."""
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    data = config_dict(tmp_path)
    data["siprec"] = {
        "listen": [f"udp:127.0.0.1:{udp}", f"tcp:127.0.0.1:{tcp}"],
        "rtp_ports": "32000-32999",
        "party_headers": ["X-Recorded-Line"],
    }
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    config = tmp_path / "tapeline.toml"
    config.write_text(dumps(data))
    proc = _start_recorder(config)
    try:
        _wait_listening(tcp)
        yield Recorder(config=config, udp=udp, tcp=tcp)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_listening(port: int) -> None:
    """The status listener answers before every SIP listener is bound: wait for the stream one."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)
        else:
            return


def _sipp(
    scenario: Path, port: int, cwd: Path, call_id: str, *, transport: str = "u1"
) -> subprocess.CompletedProcess[str]:
    local = free_port() if transport.startswith("t") else free_port(socket.SOCK_DGRAM)
    result = subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(scenario),
            "-t",
            transport,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(local),
            "-mp",
            str(free_port()),
            "-cid_str",
            call_id,
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _audio(config: Path, record_id: str) -> np.ndarray:
    archive = Archive.open(load_config(config, environ={}), migrate=False)
    try:
        _, audio = show(archive, REVIEWER, record_id, audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000
    return np.asarray(frames)


def _find(haystack: np.ndarray, needle: np.ndarray, start: int = 0) -> int:
    """Index where `needle` occurs exactly in `haystack` at or after `start`, else -1."""
    first = needle[0]
    for index in np.flatnonzero(haystack[start:] == first) + start:
        if np.array_equal(haystack[index : index + len(needle)], needle):
            return int(index)
    return -1


SIPREC_INVITE_CHECKS = ("a=recvonly", "a=label:2", r"\+sip\.srs")


def test_siprec_over_tcp_is_recorded_sample_exact(recorder: Recorder, tmp_path: Path) -> None:
    employee, other = _ulaw_tone(440, 1.5), _ulaw_tone(1000, 1.5)
    _write_pcap(tmp_path / "call.pcap", [employee, other])
    body = _multipart(
        ("application/sdp", SDP.format(direction="sendonly")),
        ("application/rs-metadata+xml", METADATA),
    )
    scenario = _scenario(
        tmp_path / "tcp.xml",
        _send("INVITE", 1, body, "multipart/mixed;boundary=b", "Require: siprec\n      "),
        _expect(100, optional=True),
        _expect(200, *SIPREC_INVITE_CHECKS),
        _ack(1),
        _play("call.pcap"),
        _pause(2000),
        _send("BYE", 2),
        _expect(200),
    )
    call_id = f"tcp-{os.getpid()}@127.0.0.1"
    _sipp(scenario, recorder.tcp, tmp_path, call_id, transport="t1")
    record = _wait_filed(recorder.config, call_id)
    assert record["kind"] == "call"
    frames = _audio(recorder.config, str(record["id"]))
    for channel, payload in ((0, employee), (1, other)):
        assert _find(frames[:, channel], _sox_decode(payload)) >= 0, f"channel {channel}"


def test_options_ping_is_answered_with_accept_and_supported(
    recorder: Recorder, tmp_path: Path
) -> None:
    scenario = _scenario(
        tmp_path / "options.xml",
        _send("OPTIONS", 1).replace("[peer_tag_param]", ""),
        _expect(200, "Accept:.*application/rs-metadata\\+xml", "Supported:.*siprec"),
    )
    _sipp(scenario, recorder.udp, tmp_path, f"options-{os.getpid()}")


def test_cancel_racing_the_answer_leaves_one_clean_session(
    recorder: Recorder, tmp_path: Path
) -> None:
    """The SBC cancels the recording leg as the call is abandoned; the SRS has already answered.

    An SRS answers within microseconds, so an SBC's CANCEL "before answer" crosses our 200 on
    the wire (SIPp cannot even send it before the 200 arrives). RFC 3261 §9.2: the CANCEL gets
    200 and has no effect; the SBC ACKs and BYEs. Nothing is lost or left open: the signalled
    session is filed (a capture failure, having no media) and no session stays active.
    """
    body = _multipart(
        ("application/sdp", SDP.format(direction="sendonly")),
        ("application/rs-metadata+xml", METADATA),
    )
    cancel = """  <send>
    <![CDATA[

      CANCEL sip:srs@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:srs@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""
    scenario = _scenario(
        tmp_path / "cancel.xml",
        _send("INVITE", 1, body, "multipart/mixed;boundary=b"),
        _expect(100, optional=True),
        _expect(200, "CSeq: 1 INVITE"),
        cancel,
        _expect(200, "CSeq: 1 CANCEL"),
        _ack(1),
        _send("BYE", 2),
        _expect(200),
    )
    call_id = f"cancel-{os.getpid()}@127.0.0.1"
    _sipp(scenario, recorder.udp, tmp_path, call_id)
    record = _wait_filed(recorder.config, call_id)
    assert (record["kind"], record["outcome"]) == ("capture_failure", "no_rtp")
    assert _active_calls(recorder.config) == 0  # nothing left open


def _active_calls(config: Path) -> float:
    """`tapeline_calls_active{source="siprec"}` from the recorder's /metrics."""
    status = load_config(config, environ={}).node.status_listen
    with urllib.request.urlopen(
        f"http://{status}/metrics", timeout=10
    ) as response:  # loopback status listener
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('tapeline_calls_active{source="siprec"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no siprec active-calls gauge in /metrics")


def test_reinvite_pause_resume_and_metadata_update(recorder: Recorder, tmp_path: Path) -> None:
    first = [_ulaw_tone(440, 1.5), _ulaw_tone(1000, 1.5)]
    second = [_ulaw_tone(660, 1.5), _ulaw_tone(1300, 1.5)]
    _write_pcap(tmp_path / "first.pcap", first)
    # After the resume the SRC's sequence numbers and timestamps continue, as an SBC's do.
    _write_pcap(tmp_path / "second.pcap", second, seq0=200, ts0=200 * 8 * PACKET_MS)
    body = _multipart(
        ("application/sdp", SDP.format(direction="sendonly")),
        ("application/rs-metadata+xml", METADATA),
    )
    pause = _multipart(
        ("application/sdp", SDP.format(direction="inactive")),
        ("application/rs-metadata+xml", JOINED),
    )
    ctype = "multipart/mixed;boundary=b"
    scenario = _scenario(
        tmp_path / "pause.xml",
        _send("INVITE", 1, body, ctype),
        _expect(100, optional=True),
        _expect(200, *SIPREC_INVITE_CHECKS),
        _ack(1),
        _play("first.pcap"),
        _pause(2000),
        _send("INVITE", 2, pause, ctype),
        _expect(100, optional=True),
        _expect(200, "a=inactive"),
        _ack(2),
        _pause(1500),
        _send("INVITE", 3, SDP.format(direction="sendonly"), "application/sdp"),
        _expect(100, optional=True),
        _expect(200, "a=recvonly"),
        _ack(3),
        _play("second.pcap"),
        _pause(2000),
        _send("BYE", 4),
        _expect(200),
    )
    call_id = f"pause-{os.getpid()}@127.0.0.1"
    _sipp(scenario, recorder.udp, tmp_path, call_id)
    record = _wait_filed(recorder.config, call_id)
    assert record["kind"] == "call"
    gaps = record["gaps"]
    assert isinstance(gaps, list)
    assert {g["reason"] for g in gaps} == {"paused:1", "paused:2"}
    for gap in gaps:
        assert 1000 <= gap["end_ms"] - gap["start_ms"] <= 4000, gap  # the 1.5 s pause, SIPp-timed
    identifiers = {p["identifier"] for p in cast("list[dict[str, Any]]", record["participants"])}
    assert "+447700900777" in identifiers  # the participant the update added
    frames = _audio(recorder.config, str(record["id"]))
    duration = len(frames) / 8000
    assert duration >= 3 + 1.0  # both talk spurts and the silence of the pause between them
    for channel in (0, 1):
        at = _find(frames[:, channel], _sox_decode(first[channel]))
        assert at >= 0, f"first segment, channel {channel}"
        again = _find(frames[:, channel], _sox_decode(second[channel]), at + len(first[channel]))
        assert again >= 0, f"second segment, channel {channel}"
        silence = frames[at + len(first[channel]) : again, channel]
        assert len(silence) >= 8000  # at least a second of the pause kept as silence
        assert not silence.any()


def test_plain_fork_invite_maps_the_employee_from_headers(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A carrier fork without metadata: employee from a configured header, inbound, swapped."""
    caller, employee = _ulaw_tone(700, 1.5), _ulaw_tone(300, 1.5)
    # m-line 1 carries the calling party (the client), m-line 2 the called employee.
    _write_pcap(tmp_path / "fork.pcap", [caller, employee])
    extra = (
        "X-Recorded-Line: <tel:+442071230002>\n      "
        'P-Asserted-Identity: "A Client" <tel:+447700900555>\n      '
    )
    scenario = _scenario(
        tmp_path / "fork.xml",
        _send("INVITE", 1, SDP.format(direction="sendonly"), "application/sdp", extra),
        _expect(100, optional=True),
        _expect(200, "a=recvonly"),
        _ack(1),
        _play("fork.pcap"),
        _pause(2000),
        _send("BYE", 2),
        _expect(200),
    )
    call_id = f"fork-{os.getpid()}@127.0.0.1"
    _sipp(scenario, recorder.udp, tmp_path, call_id)
    record = _wait_filed(recorder.config, call_id)
    assert record["line"]["number"] == "+442071230002"  # type: ignore[index]
    assert record["counterparty"]["identifier"] == "+447700900555"  # type: ignore[index]
    assert record["direction"] == "inbound"
    frames = _audio(recorder.config, str(record["id"]))
    assert _find(frames[:, 0], _sox_decode(employee)) >= 0  # the employee on channel 0
    assert _find(frames[:, 1], _sox_decode(caller)) >= 0


@pytest.mark.parametrize(
    ("name", "line", "other"),
    [
        ("drachtio__cisco-siprec-offer.txt", "7301", "7300"),
        ("drachtio__sonus-siprec-offer.txt", "2249888500", "2249888012"),
    ],
)
def test_vendor_corpus_bodies_sent_by_sipp_are_recorded(
    recorder: Recorder, tmp_path: Path, name: str, line: str, other: str
) -> None:
    source = CORPUS / name
    if not source.exists():
        pytest.skip(f"public corpus not present at {CORPUS} (see shared/corpus/SOURCES.md)")
    text = source.read_text().replace("\r\n", "\n").strip("\n") + "\n"
    boundary = next(ln for ln in text.splitlines() if ln.startswith("--"))[2:]
    # The vendor's SDP, pointed at SIPp's own media port (as the SBC would point it at itself).
    ports = sorted({ln.split()[1] for ln in text.splitlines() if ln.startswith("m=audio")})
    for index, port in enumerate(ports):
        keyword = f"[media_port+{2 * index}]" if index else "[media_port]"
        text = text.replace(f"m=audio {port} ", f"m=audio {keyword} ")
    lines = []
    for ln in text.splitlines():
        if ln.startswith(("c=IN IP4", "o=")):
            ln = ln.rsplit(" ", 1)[0] + " [local_ip]"  # noqa: PLW2901  # rewritten in place
        lines.append(ln)
    body = "\n".join(lines) + "\n"
    employee, counterpart = _ulaw_tone(450, 1.5), _ulaw_tone(1100, 1.5)
    _write_pcap(tmp_path / "vendor.pcap", [employee, counterpart])
    scenario = _scenario(
        tmp_path / "vendor.xml",
        _send("INVITE", 1, body, f"multipart/mixed;boundary={boundary}", "Require: siprec\n      "),
        _expect(100, optional=True),
        _expect(200, *SIPREC_INVITE_CHECKS),
        _ack(1),
        _play("vendor.pcap"),
        _pause(2000),
        _send("BYE", 2),
        _expect(200),
    )
    call_id = f"vendor-{name}-{os.getpid()}"
    _sipp(scenario, recorder.udp, tmp_path, call_id)
    record = _wait_filed(recorder.config, call_id)
    assert record["kind"] == "call"
    participants = cast("list[dict[str, Any]]", record["participants"])
    identifiers = " ".join(str(p["identifier"]) for p in participants)
    assert line in identifiers
    assert other in identifiers
    frames = _audio(recorder.config, str(record["id"]))
    heard = {
        channel: [
            tone
            for tone, payload in (("employee", employee), ("other", counterpart))
            if _find(frames[:, channel], _sox_decode(payload)) >= 0
        ]
        for channel in (0, 1)
    }
    # Each stream lands whole on exactly one channel, and the two never share one.
    assert sorted(heard[0] + heard[1]) == ["employee", "other"], heard
    assert len(heard[0]) == len(heard[1]) == 1, heard


# --- TLS ------------------------------------------------------------------------------------


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common: str
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True, slots=True)
class TlsRecorder:
    config: Path
    port: int
    server_ca: Path
    clients: dict[str, tuple[Path, Path]]


@pytest.fixture
def tls_recorder(tmp_path: Path) -> Iterator[TlsRecorder]:
    """A recorder with only a tls: listener, a client CA, and a trunk admitting `cert:sbc1`."""
    server_ca_key, server_ca = _ca("tapeline test server CA")
    client_ca_key, client_ca = _ca("bank SBC CA")
    rogue_ca_key, rogue_ca = _ca("somebody else's CA")
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "server-ca.pem").write_bytes(server_ca.public_bytes(serialization.Encoding.PEM))
    (pki / "client-ca.pem").write_bytes(client_ca.public_bytes(serialization.Encoding.PEM))
    cert, key = _leaf(server_ca_key, server_ca, "localhost")
    (pki / "srs.crt").write_bytes(cert)
    (pki / "srs.key").write_bytes(key)
    clients = {}
    for label, (ca_key, ca, common) in {
        "allowed": (client_ca_key, client_ca, "sbc1.bank.example"),
        "unlisted": (client_ca_key, client_ca, "sbc9.bank.example"),
        "rogue": (rogue_ca_key, rogue_ca, "sbc1.bank.example"),
    }.items():
        cert, key = _leaf(ca_key, ca, common)
        (pki / f"{label}.crt").write_bytes(cert)
        (pki / f"{label}.key").write_bytes(key)
        clients[label] = (pki / f"{label}.crt", pki / f"{label}.key")
    port = free_port()
    data = config_dict(tmp_path)
    data["siprec"] = {
        "listen": [f"tls:127.0.0.1:{port}"],
        "rtp_ports": "33000-33999",
        "tls_cert_file": str(pki / "srs.crt"),
        "tls_key_file": str(pki / "srs.key"),
        "tls_client_ca_file": str(pki / "client-ca.pem"),
    }
    data["trunks"] = [{"name": "sbc1", "match": ["cert:sbc1.bank.example"]}]
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    config = tmp_path / "tapeline.toml"
    config.write_text(dumps(data))
    proc = _start_recorder(config)
    try:
        _wait_listening(port)
        yield TlsRecorder(config, port, pki / "server-ca.pem", clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _tls_client(rec: TlsRecorder, client: str | None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=rec.server_ca)
    if client is not None:
        context.load_cert_chain(*rec.clients[client])
    raw = socket.create_connection(("127.0.0.1", rec.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def _tls_exchange(sock: ssl.SSLSocket, request: bytes) -> SipResponse:
    """Send one request over the TLS stream; return its final response (Content-Length framed)."""
    sock.sendall(request)
    framer = SipFramer()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the SRS closed the connection")
        framer.receive_data(chunk)
        while (event := framer.next_event()) is not NEED_DATA:
            if isinstance(event, SipResponse) and event.status_code >= 200:
                return event


def _tls_invite(call_id: str) -> bytes:
    body, ctype = _siprec_body()
    raw = _request("INVITE", body=body, content_type=ctype, call_id=call_id)
    return raw.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")


def test_tls_with_an_allowed_client_certificate_records(tls_recorder: TlsRecorder) -> None:
    call_id = f"tls-ok-{os.getpid()}"
    with _tls_client(tls_recorder, "allowed") as sock:
        answer = _tls_exchange(sock, _tls_invite(call_id))
        assert answer.status_code == 200
        tag = answer.to_addr.tag or ""
        ack = _request("ACK", to_tag=tag, call_id=call_id).replace(b"/UDP", b"/TLS")
        sock.sendall(ack)
        bye = _request("BYE", to_tag=tag, cseq=2, branch="z9hG4bKtlsbye", call_id=call_id)
        assert _tls_exchange(sock, bye.replace(b"/UDP", b"/TLS")).status_code == 200
    record = _wait_filed(tls_recorder.config, call_id)
    assert record["source"]["path"] == "siprec"  # type: ignore[index]
    assert record["kind"] == "capture_failure"  # signalled without media: still filed


def test_tls_client_with_a_valid_but_unlisted_certificate_gets_403(
    tls_recorder: TlsRecorder,
) -> None:
    with _tls_client(tls_recorder, "unlisted") as sock:
        assert _tls_exchange(sock, _tls_invite("tls-unlisted")).status_code == 403


@pytest.mark.parametrize("client", [None, "rogue"])
def test_tls_client_without_a_certificate_from_the_ca_is_refused(
    tls_recorder: TlsRecorder, client: str | None
) -> None:
    """No certificate, or one from another CA: the handshake fails, no SIP is read."""
    # TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
    refused = r"(?i)certificate|unknown ca|closed|eof|reset"
    with pytest.raises(OSError, match=refused), _tls_client(tls_recorder, client) as sock:
        _tls_exchange(sock, _tls_invite(f"tls-refused-{client}"))


def test_a_full_disk_refuses_new_calls_with_503_and_an_alarm_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    """Below `storage.min_free_bytes` a call is refused before any port or journal is taken."""
    udp = free_port(socket.SOCK_DGRAM)
    data = config_dict(tmp_path)
    data["siprec"] = {"listen": [f"udp:127.0.0.1:{udp}"], "rtp_ports": "34000-34999"}
    data["trunks"] = [{"name": "loopback", "match": ["127.0.0.0/8"]}]
    data["storage"]["min_free_bytes"] = 1 << 62  # more than any disk here has free: "full"
    generate_self_signed(Path(data["web"]["tls_cert_file"]), Path(data["web"]["tls_key_file"]))
    config = tmp_path / "tapeline.toml"
    config.write_text(dumps(data))
    kept = Path(data["storage"]["path"]) / "kept-by-the-admin.bin"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"x" * 4096)
    proc = _start_recorder(config)
    try:
        body, ctype = _siprec_body()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            invite = _request("INVITE", body=body, content_type=ctype)
            reply = None
            for _ in range(40):  # retransmitted like a UAC would: the listener may still bind
                sock.sendto(invite, ("127.0.0.1", udp))
                try:
                    reply = parse_datagram(sock.recv(65536))
                except TimeoutError:
                    continue
                assert isinstance(reply, SipResponse)
                if reply.status_code >= 200:
                    break
            assert isinstance(reply, SipResponse)
        assert (reply.status_code, reply.reason) == (503, "Storage full")
        assert proc.poll() is None  # refused, not crashed
        archive = Archive.open(load_config(config, environ={}), migrate=False)
        try:
            codes = {alarm.code for alarm in active_alarms(archive)}
        finally:
            archive.close()
        assert "storage.full" in codes
        assert not list(Path(data["storage"]["spool"]).glob("siprec-*.tpj"))
        assert kept.read_bytes() == b"x" * 4096  # nothing deleted to make room
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_malformed_sip_over_tcp_gets_400_then_the_connection_closes(recorder: Recorder) -> None:
    broken = _request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: lots")
    with socket.create_connection(("127.0.0.1", recorder.tcp), timeout=10) as sock:
        sock.sendall(broken.replace(b"/UDP", b"/TCP"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"SIP/2.0 400 ")
    assert b"Call-ID: call-1" in received
    # The recorder stays healthy for the next peer.
    with socket.create_connection(("127.0.0.1", recorder.tcp), timeout=10) as sock:
        sock.sendall(_request("OPTIONS", branch="z9hG4bKok").replace(b"/UDP", b"/TCP"))
        assert sock.recv(65536).startswith(b"SIP/2.0 200 ")
