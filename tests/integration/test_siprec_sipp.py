"""SIPp as the SBC: a SIPREC call with two G.711 streams, recorded, filed and compared with sox.

The oracle is independent: sox decodes the very µ-law payload bytes SIPp sent, and the filed
recording's channel must hold exactly those samples (channel 0 = the recorded employee line, by
the rs-metadata participant/stream associations and `[[lines]]`, not by label order).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.reading import show
from tapeline.archive.records import Filters, search
from tapeline.config import load_config
from tapeline.proto.net import PcapWriter, build_udp_frame
from tests.conftest import free_port, write_config_file
from tests.tomlwriter import dumps

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).with_name("sipp") / "siprec_uac.xml"
REVIEWER = Actor(name="rita", roles=("reviewer",))
SECONDS = 2.0
PACKET_MS = 20


def _ulaw_tone(freq: float, seconds: float) -> bytes:
    """µ-law bytes of a tone, encoded by sox (so our decoder is checked against its encoder too)."""
    result = subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-t",
            "ul",
            "-",
            "synth",
            str(seconds),
            "sine",
            str(freq),
            "gain",
            "-6",
        ],
        capture_output=True,
        check=True,
    )
    return result.stdout


def _rtp(seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc) + payload


def _write_pcap(path: Path, streams: list[bytes]) -> None:
    writer = PcapWriter()
    out = [writer.header(1)]
    step = 8 * PACKET_MS
    t0 = 1_700_000_000 * 10**9
    for index in range(len(streams[0]) // step):
        for number, payload in enumerate(streams):
            chunk = payload[index * step : (index + 1) * step]
            packet = _rtp(index, index * step, 0x1000 + number, chunk)
            frame = build_udp_frame(
                "127.0.0.1", "127.0.0.1", 7000 + 2 * number, 6000 + 2 * number, packet
            )
            out.append(writer.packet(t0 + index * PACKET_MS * 10**6 + number * 1000, frame))
    path.write_bytes(b"".join(out))


def _sox_decode(ulaw: bytes) -> np.ndarray:
    raw = subprocess.run(
        ["sox", "-t", "ul", "-r", "8000", "-c", "1", "-", "-t", "s16", "-"],
        input=ulaw,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2")


@pytest.fixture
def siprec_config(tmp_path: Path) -> tuple[Path, int]:
    """An appliance config with a loopback trunk and a UDP SIPREC listener."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp (Debian sip-tester) is not installed: make test installs it")
    config_path = write_config_file(tmp_path)
    text = config_path.read_text()
    sip_port = free_port(socket.SOCK_DGRAM)
    text = text.replace(
        text[text.index("[siprec]") :].split("\n\n")[0],
        f'[siprec]\nlisten = ["udp:127.0.0.1:{sip_port}"]\nrtp_ports = "31000-31999"',
    )
    text += "\n" + dumps({"trunks": [{"name": "loopback", "match": ["127.0.0.0/8"]}]})
    config_path.write_text(text)
    return config_path, sip_port


@pytest.fixture
def recorder(siprec_config: tuple[Path, int]) -> Iterator[tuple[Path, int]]:
    proc = _start_recorder(siprec_config[0])
    try:
        yield siprec_config
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_filed(config_path: Path, call_id: str) -> dict[str, object]:
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with archive.index.read() as session:
                found = [
                    r
                    for r in search(session, Filters(include_hidden=True))
                    if r["source"]["sip_call_id"] == call_id
                ]
            if found:
                return found[0]
            time.sleep(0.2)
    finally:
        archive.close()
    raise AssertionError(f"call {call_id} was not filed")


def test_siprec_call_recorded_stereo_and_sample_exact(
    recorder: tuple[Path, int], tmp_path: Path
) -> None:
    config_path, sip_port = recorder
    employee, other = _ulaw_tone(440, SECONDS), _ulaw_tone(1000, SECONDS)
    pcap = tmp_path / "two-streams.pcap"
    _write_pcap(pcap, [employee, other])
    call_id = f"tapeline-test-{os.getpid()}@127.0.0.1"
    result = subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            str(SCENARIO),
            "-d",
            str(int(SECONDS * 1000) + 500),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port(socket.SOCK_DGRAM)),
            "-mp",
            str(free_port()),
            "-cid_str",
            call_id,
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = _wait_filed(config_path, call_id)
    assert record["kind"] == "call", record
    assert record["line"]["number"] == "+442071230001"  # type: ignore[index]
    assert record["counterparty"]["identifier"] == "+447700900123"  # type: ignore[index]
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        _, audio = show(archive, REVIEWER, str(record["id"]), audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000
    for channel, payload in ((0, employee), (1, other)):
        expected = _sox_decode(payload)
        got = frames[:, channel]
        start = int(np.flatnonzero(got)[0])
        assert np.array_equal(got[start : start + len(expected)], expected), f"channel {channel}"
    print(json.dumps(record["streams"]))  # noqa: T201  # shown with -s


def _udp_request(sock: socket.socket, target: tuple[str, int], data: bytes) -> int:
    """Send one request, return the final status."""
    from tapeline.proto.sip import SipResponse, parse_datagram  # noqa: PLC0415

    sock.sendto(data, target)
    while True:
        reply = parse_datagram(sock.recv(65536))
        assert isinstance(reply, SipResponse)
        if reply.status_code >= 200:
            return reply.status_code


def test_signalled_call_without_media_is_filed_as_a_capture_failure(
    recorder: tuple[Path, int],
) -> None:
    from tests.unit.daemon.siprec.test_core import _request, _siprec_body  # noqa: PLC0415

    config_path, sip_port = recorder
    target = ("127.0.0.1", sip_port)
    body, ctype = _siprec_body()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        sock.sendto(_request("INVITE", body=body, content_type=ctype, call_id="no-media-1"), target)
        to_tag = ""
        while not to_tag:
            from tapeline.proto.sip import SipResponse, parse_datagram  # noqa: PLC0415

            reply = parse_datagram(sock.recv(65536))
            assert isinstance(reply, SipResponse)
            if reply.status_code == 200:
                to_tag = reply.to_addr.tag or ""
        sock.sendto(_request("ACK", to_tag=to_tag, call_id="no-media-1"), target)
        bye = _request("BYE", to_tag=to_tag, cseq=2, branch="z9hG4bKbye", call_id="no-media-1")
        assert _udp_request(sock, target, bye) == 200
    record = _wait_filed(config_path, "no-media-1")
    assert record["kind"] == "capture_failure"
    assert record["outcome"] == "no_rtp"
    assert record["recording"] is None


def _start_recorder(config_path: Path) -> subprocess.Popen[bytes]:
    """Start a recorder and wait until /readyz says every service started (listeners bound)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = load_config(config_path, environ={}).node.status_listen
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "recorder exited"
        assert time.monotonic() < deadline, "recorder did not start"
        try:
            url = f"http://{status}/readyz"  # the loopback status listener
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # a failing check answers 503 with the same body
            body = exc.read()
        except OSError:
            time.sleep(0.1)
            continue
        checks = json.loads(body).get("checks", {})
        if _check_status(checks.get("started")) == "pass":
            return proc
        time.sleep(0.1)


def _check_status(check: object) -> str | None:
    """The status of one /readyz check, whichever shape the report gives it."""
    if isinstance(check, dict):
        return str(check.get("status"))
    if isinstance(check, list) and check:
        return _check_status(check[0])
    if isinstance(check, str):
        return check
    return None


def test_kill_9_mid_call_then_restart_files_the_first_part_marked_incomplete(
    siprec_config: tuple[Path, int], tmp_path: Path
) -> None:
    """Kill -9 ten seconds into a twenty-second call: the first nine seconds or more survive."""
    config_path, sip_port = siprec_config
    config = load_config(config_path, environ={})
    call_seconds = 20.0
    employee, other = _ulaw_tone(440, call_seconds), _ulaw_tone(1000, call_seconds)
    _write_pcap(tmp_path / "two-streams.pcap", [employee, other])
    victim = _start_recorder(config_path)
    call_id = f"tapeline-kill9-{os.getpid()}@127.0.0.1"
    sipp = subprocess.Popen(
        [
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            str(SCENARIO),
            "-d",
            str(int(call_seconds * 1000)),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port(socket.SOCK_DGRAM)),
            "-mp",
            str(free_port()),
            "-cid_str",
            call_id,
            "-timeout",
            "60s",
            "-nostdin",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # ten seconds of both streams sealed in the journal: ~100 packets/s of ~250 bytes
        spool = config.storage.spool
        deadline = time.monotonic() + 40
        while sum(p.stat().st_size for p in spool.glob("siprec-*.tpj")) < 10 * 100 * 250:
            assert time.monotonic() < deadline, "journal did not grow"
            time.sleep(0.2)
        victim.kill()
        victim.wait()
        assert list(spool.glob("siprec-*.tpj")), "the journal must outlive the crash"
        revived = _start_recorder(config_path)
        try:
            record = _wait_filed(config_path, call_id)
        finally:
            revived.terminate()
            revived.wait(timeout=30)
    finally:
        sipp.kill()
        sipp.wait()
    assert record["incomplete"] is True
    assert record["kind"] == "call"
    archive = Archive.open(config, migrate=False)
    try:
        _, audio = show(archive, REVIEWER, str(record["id"]), audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    voiced = np.flatnonzero(frames[:, 0])
    assert (voiced[-1] - voiced[0]) / rate >= 9.0
    expected = _sox_decode(employee)
    start = int(voiced[0])
    assert np.array_equal(frames[start : start + 9 * rate, 0], expected[: 9 * rate])
    assert not list(config.storage.spool.glob("siprec-*.tpj"))


def _srtp_call(sip_port: int, call_id: str, *, wrong_key: bool) -> bytes:
    """A SIPREC call over RTP/SAVP from a Python SRC; returns the µ-law it sent on label 1."""
    import base64  # noqa: PLC0415

    import pylibsrtp  # noqa: PLC0415

    from tapeline.proto.sdp import parse_sdp  # noqa: PLC0415
    from tapeline.proto.sip import SipResponse, parse_datagram  # noqa: PLC0415
    from tests.unit.daemon.siprec.test_core import METADATA, _request  # noqa: PLC0415

    key = bytes(range(30))
    sent_key = bytes(30) if wrong_key else key
    inline = base64.b64encode(key).decode()
    sdp = "v=0\r\no=src 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" + "".join(
        f"m=audio {6000 + 2 * i} RTP/SAVP 0\r\na=label:{i + 1}\r\na=sendonly\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"
        for i in range(2)
    )
    body = (
        "--b\r\nContent-Type: application/sdp\r\n\r\n"
        + sdp
        + "--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n"
        + METADATA
        + "\r\n--b--\r\n"
    )
    tone = _ulaw_tone(440, 1.0)
    target = ("127.0.0.1", sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        invite = _request(
            "INVITE",
            body=body,
            content_type="multipart/mixed;boundary=b",
            call_id=call_id,
            branch=f"z9hG4bK{call_id}",
        )
        sock.sendto(invite, target)
        while True:
            reply = parse_datagram(sock.recv(65536))
            assert isinstance(reply, SipResponse)
            if reply.status_code >= 200:
                break
        assert reply.status_code == 200, reply.status_code
        answer = parse_sdp(reply.body)
        assert all(m.crypto for m in answer.media)
        to_tag = reply.to_addr.tag or ""
        sock.sendto(_request("ACK", to_tag=to_tag, call_id=call_id), target)
        policy = pylibsrtp.Policy(
            key=sent_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
        session = pylibsrtp.Session(policy=policy)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            paced = time.monotonic()
            for index in range(len(tone) // 160):
                # An RTP sender is a real-time source: one packet every 20 ms, like a phone.
                paced += PACKET_MS / 1000
                time.sleep(max(0.0, paced - time.monotonic()))
                for line, m in enumerate(answer.media):
                    packet = _rtp(
                        index, index * 160, 0x2000 + line, tone[index * 160 : (index + 1) * 160]
                    )
                    media.sendto(session.protect(packet), ("127.0.0.1", m.port))
        bye = _request("BYE", to_tag=to_tag, cseq=2, branch=f"z9hG4bKbye{call_id}", call_id=call_id)
        assert _udp_request(sock, target, bye) == 200
    return tone


def test_srtp_with_the_offered_key_decodes_and_a_wrong_key_is_a_capture_failure(
    recorder: tuple[Path, int],
) -> None:
    config_path, sip_port = recorder
    tone = _srtp_call(sip_port, "srtp-good", wrong_key=False)
    good = _wait_filed(config_path, "srtp-good")
    assert good["kind"] == "call", good
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        _, audio = show(archive, REVIEWER, str(good["id"]), audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, _ = soundfile.read(io.BytesIO(audio), dtype="int16")
    expected = _sox_decode(tone)
    start = int(np.flatnonzero(frames[:, 0])[0])
    # The call ends at the BYE, which follows the last packets closely: on a loaded machine the
    # last few 20 ms packets can fall after it. Everything heard must be exact.
    heard = frames[start : start + len(expected), 0]
    assert len(heard) >= len(expected) - 3 * 160
    assert np.array_equal(heard, expected[: len(heard)])
    _srtp_call(sip_port, "srtp-bad", wrong_key=True)
    bad = _wait_filed(config_path, "srtp-bad")
    assert bad["kind"] == "capture_failure"
    assert bad["outcome"] == "srtp_auth_failed"
    streams = bad["streams"]
    assert isinstance(streams, list)
    assert [s["quality"]["srtp_auth_failures"] for s in streams] == [50, 50]


def test_selftest_places_a_call_and_checks_both_channels(recorder: tuple[Path, int]) -> None:
    from tests.conftest import tapeline  # noqa: PLC0415

    config_path, _ = recorder
    result = tapeline("selftest", "-c", str(config_path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "channel 0: 440 Hz (expected 440 Hz) ok" in result.stdout
    assert "channel 1: 1000 Hz (expected 1000 Hz) ok" in result.stdout
    hidden = tapeline("query", "-c", str(config_path), "--json").stdout
    assert hidden == ""  # self-test calls stay out of default searches
    shown = [
        json.loads(x)
        for x in tapeline("query", "-c", str(config_path), "--all", "--json").stdout.splitlines()
    ]
    assert [(r["retention_class"], r["tags"]) for r in shown] == [("selftest", ["selftest"])]
