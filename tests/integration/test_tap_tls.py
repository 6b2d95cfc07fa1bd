"""A call whose SIP runs over real TLS: `import-pcap` keeps it from its media, flagged.

In a network namespace this test creates, a phone (127.0.0.2) and an SBC (127.0.0.3) speak SIP
over TLS (Python's `ssl`, i.e. OpenSSL, with a fresh self-signed certificate) while `tcpdump`
captures `lo`. Then two conversations run: one with plain RTP/AVP both ways (tones made by sox),
one with SRTP whose keys the capture cannot see (libsrtp). `tapeline import-pcap` of that capture
must file the plain one as one two-way orphan record flagged `tls_signalling` whose audio equals
sox's own decoding of both tones, and the SRTP one as statistics only, flagged `encrypted_media`
(ciphertext decoded as G.711 would be noise filed as if it were the call).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.archive.reading import show
from tapeline.config import load_config
from tapeline.daemon.tap.offline import read_records
from tapeline.errors import CaptureError, NotFound
from tests.conftest import require_tool, write_config_file
from tests.integration.tap_support import loopback_netns, sox_decode, sox_tone

pytestmark = pytest.mark.slow
PHONE, SBC = "127.0.0.2", "127.0.0.3"
PACKETS = 100

# Runs inside the namespace: TLS SIP first, then both conversations paced at 20 ms.
SCRIPT = r"""
import os, socket, ssl, struct, sys, threading, time
from pathlib import Path
import pylibsrtp
from tapeline.tlscert import generate_self_signed

base = Path(sys.argv[1])
phone, sbc = sys.argv[2], sys.argv[3]
tone_a, tone_b = (base / "a.ul").read_bytes(), (base / "b.ul").read_bytes()
generate_self_signed(base / "sbc.pem", base / "sbc.key")
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(base / "sbc.pem", base / "sbc.key")
listener = socket.create_server((sbc, 5061))

def serve():
    conn, _ = listener.accept()
    with server_ctx.wrap_socket(conn, server_side=True) as tls:
        tls.recv(65536)
        tls.sendall(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        tls.recv(65536)

threading.Thread(target=serve, daemon=True).start()
client_ctx = ssl.create_default_context()
client_ctx.check_hostname = False
client_ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((sbc, 5061), source_address=(phone, 0))
tls = client_ctx.wrap_socket(raw)
tls.sendall(b"INVITE sip:+447700900123@sbc SIP/2.0\r\nContent-Length: 0\r\n\r\n")
tls.recv(65536)
tls.sendall(b"ACK sip:+447700900123@sbc SIP/2.0\r\nContent-Length: 0\r\n\r\n")

def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    return s

def srtp():
    policy = pylibsrtp.Policy(key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return pylibsrtp.Session(policy=policy)

plain_phone, plain_sbc = udp(phone, 4000), udp(sbc, 6000)
secret_phone, secret_sbc = udp(phone, 4002), udp(sbc, 6002)
to_sbc, to_phone = srtp(), srtp()

def rtp(i, ssrc, payload):
    return struct.pack("!BBHII", 0x80, 0, i, i * 160, ssrc) + payload

start = time.monotonic()
for i in range(int(sys.argv[4])):
    a, b = tone_a[i * 160:(i + 1) * 160], tone_b[i * 160:(i + 1) * 160]
    plain_phone.sendto(rtp(i, 0xA, a), (sbc, 6000))
    plain_sbc.sendto(rtp(i, 0xB, b), (phone, 4000))
    secret_phone.sendto(to_sbc.protect(rtp(i, 0xC, a)), (sbc, 6002))
    secret_sbc.sendto(to_phone.protect(rtp(i, 0xD, b)), (phone, 4002))
    time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
tls.sendall(b"BYE sip:+447700900123@sbc SIP/2.0\r\nContent-Length: 0\r\n\r\n")
tls.close()
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("ip")
    with loopback_netns("tapeline-tls") as name:
        yield name


def _udp_frames(capture: Path) -> int:
    """UDP frames tcpdump has written so far (a record still being written is not counted)."""
    try:
        records = list(read_records(capture))
    except CaptureError:
        return 0
    ipv4_udp = 17
    return sum(1 for r in records if len(r.data) > 23 and r.data[23] == ipv4_udp)


def _wait_written(capture: Path, *, udp_frames: int) -> None:
    deadline = time.monotonic() + 20
    while (written := _udp_frames(capture)) < udp_frames:
        assert time.monotonic() < deadline, f"tcpdump wrote {written} of {udp_frames} UDP frames"
        time.sleep(0.05)


def _capture(netns: str, tmp_path: Path) -> Path:
    capture = tmp_path / "tls-call.pcap"
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", netns, require_tool("tcpdump"), "-i", "lo", "--immediate-mode",
         "-U", "-w", str(capture)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert tcpdump.stderr is not None
        assert b"listening on" in tcpdump.stderr.readline()
        subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT, str(tmp_path), PHONE,
             SBC, str(PACKETS)],
            check=True, timeout=60,
        )  # fmt: skip
        _wait_written(capture, udp_frames=4 * PACKETS)  # every RTP/SRTP packet, then stop
    finally:
        tcpdump.send_signal(signal.SIGINT)
        _, err = tcpdump.communicate(timeout=30)
    assert b"\n0 packets dropped by kernel" in err, err
    return capture


def test_tls_signalled_call_is_kept_from_its_media_and_srtp_is_not_filed_as_audio(
    netns: str, tmp_path: Path
) -> None:
    tone_a, tone_b = (sox_tone(f, PACKETS * 0.02, "ul") for f in (440, 1000))
    (tmp_path / "a.ul").write_bytes(tone_a)
    (tmp_path / "b.ul").write_bytes(tone_b)
    capture = _capture(netns, tmp_path)
    config = write_config_file(tmp_path / "appliance")
    done = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config), str(capture)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert "2 TLS streams (signalling not readable)" in done.stderr  # both directions of it
    assert [r["kind"] for r in records] == ["orphan_stream", "orphan_stream"], records
    by_ssrc = {tuple(s["ssrc"] for s in r["streams"]): r for r in records}
    assert set(by_ssrc) == {(0xA, 0xB), (0xC, 0xD)}
    plain, secret = by_ssrc[0xA, 0xB], by_ssrc[0xC, 0xD]
    for record in (plain, secret):
        assert record["outcome"] == "tls_signalling"
        assert [s["quality"]["rtp_packets"] for s in record["streams"]] == [PACKETS, PACKETS]
    assert "tls_signalling" in plain["tags"]
    assert "encrypted_media" not in plain["tags"]
    assert "encrypted_media" in secret["tags"]
    archive = Archive.open(load_config(config, environ={}), migrate=False)
    try:
        reviewer = Actor(name="rita", roles=("reviewer",))
        _, audio = show(archive, reviewer, str(plain["id"]), audio=True)
        with pytest.raises(NotFound, match="has no recording"):  # no noise filed as the call
            show(archive, reviewer, str(secret["id"]), audio=True)
    finally:
        archive.close()
    assert audio is not None
    frames, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000
    for channel, tone in ((0, tone_a), (1, tone_b)):
        expected = sox_decode(tone, "ul")
        got = np.asarray(frames)[:, channel]
        start = int(np.flatnonzero(got)[0])
        assert np.array_equal(got[start : start + len(expected)], expected), f"channel {channel}"
