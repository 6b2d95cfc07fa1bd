"""SRTP/SRTCP receive side: known-key round trips, wrong keys counted, never raised."""

from __future__ import annotations

import base64
import struct

import pylibsrtp
import pytest

from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession
from tapeline.media.srtp import CryptoSuite, SrtpKeyError, SrtpReceiver, decode_sdes_key

KEY = bytes(range(30))
OTHER_KEY = bytes(range(1, 31))
PROFILES = {
    CryptoSuite.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    CryptoSuite.AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def _sender(suite: CryptoSuite, key: bytes = KEY) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILES[suite]
    )
    return pylibsrtp.Session(policy=policy)


def _rtp(sequence: int) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, 0x1234) + b"\x80" * 160
    )  # loud μ-law


@pytest.mark.parametrize("suite", list(CryptoSuite))
def test_known_key_unprotects_rtp_and_rtcp(suite: CryptoSuite) -> None:
    sender = _sender(suite)
    receiver = SrtpReceiver(suite=suite, key=KEY)
    protected = sender.protect(_rtp(1))
    tag = 10 if suite is CryptoSuite.AES_CM_128_HMAC_SHA1_80 else 4
    assert len(protected) == len(_rtp(1)) + tag
    assert receiver.unprotect(protected) == _rtp(1)
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    assert receiver.unprotect_rtcp(sender.protect_rtcp(rr)) == rr
    assert receiver.auth_failures == 0


def test_wrong_key_is_counted_not_raised() -> None:
    sender = _sender(CryptoSuite.AES_CM_128_HMAC_SHA1_80, OTHER_KEY)
    receiver = SrtpReceiver(suite=CryptoSuite.AES_CM_128_HMAC_SHA1_80, key=KEY)
    results = [receiver.unprotect(sender.protect(_rtp(n))) for n in range(5)]
    rtcp = receiver.unprotect_rtcp(sender.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, 1)))
    assert results == [None] * 5
    assert rtcp is None
    assert receiver.auth_failures == 6


def test_replay_and_oversize_and_runt_are_counted() -> None:
    sender = _sender(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    receiver = SrtpReceiver(suite=CryptoSuite.AES_CM_128_HMAC_SHA1_80, key=KEY)
    packet = sender.protect(_rtp(1))
    assert receiver.unprotect(packet) is not None
    assert receiver.unprotect(packet) is None
    assert receiver.replays == 1
    assert receiver.unprotect(bytes(2000)) is None
    assert receiver.unprotect(b"\x80\x00") is None
    assert receiver.other_failures + receiver.auth_failures == 2


def test_srtp_stream_in_the_session_counts_auth_failures_in_quality() -> None:
    formats = {0: PayloadFormat(payload_type=0, encoding_name="PCMU", clock_rate=8000)}
    media = MediaSession(start=0.0)
    good = _sender(CryptoSuite.AES_CM_128_HMAC_SHA1_32)
    bad = _sender(CryptoSuite.AES_CM_128_HMAC_SHA1_32, OTHER_KEY)
    stream = media.add_stream(
        channel=0,
        formats=formats,
        srtp=SrtpReceiver(suite=CryptoSuite.AES_CM_128_HMAC_SHA1_32, key=KEY),
    )
    for n in range(50):
        stream.receive_datagram(good.protect(_rtp(n)), n * 0.02)
    for n in range(50, 60):
        stream.receive_datagram(bad.protect(_rtp(n)), n * 0.02)
    result = media.finish(end=1.2)
    assert (result.quality[0].received, result.quality[0].srtp_auth_failures) == (50, 10)
    assert result.stereo[: 50 * 160, 0].all()


def test_decode_sdes_key() -> None:
    text = base64.b64encode(KEY).decode()
    assert decode_sdes_key(f"inline:{text}|2^20|1:4") == KEY
    assert decode_sdes_key(text) == KEY
    with pytest.raises(SrtpKeyError, match="SDES key is not base64"):
        decode_sdes_key("inline:***")
    with pytest.raises(SrtpKeyError, match="SDES key is not 30 octets of master key and salt"):
        decode_sdes_key("inline:" + base64.b64encode(bytes(16)).decode())
    with pytest.raises(SrtpKeyError, match="SDES key is not 30 octets of master key and salt"):
        SrtpReceiver(suite=CryptoSuite.AES_CM_128_HMAC_SHA1_80, key=bytes(16))
