"""SDES-SRTP G.722 call from the corpus (rtpproxy alice/bob, keys from siprec.md §13.3).

Reads `<repo root>/../shared/corpus` in place; skips when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession
from tapeline.media.srtp import CryptoSuite, SrtpReceiver, decode_sdes_key
from tapeline.proto.rtp import parse_rtp
from tests.unit.media.pcapfile import corpus_file, read_udp

pytestmark = pytest.mark.skipif(
    not corpus_file("SOURCES.md").exists(), reason="corpus ../shared/corpus is not present"
)
ALICE = ("rtpproxy__alice_srtp.pcap", "9sOd+W72ilwfNgNt0FzlGYj6YZPMqN1sJJx43UuS", 1556)
BOB = ("rtpproxy__bob_srtp.pcap", "NhqBK/JjtVJgmOgPyDKpvMTEjvFCQ4eiyVQelF6x", 1564)
G722 = {9: PayloadFormat(payload_type=9, encoding_name="G722", clock_rate=8000)}
SUITE = CryptoSuite.AES_CM_128_HMAC_SHA1_80


def _receiver(key: str) -> SrtpReceiver:
    return SrtpReceiver(suite=SUITE, key=decode_sdes_key(key))


def test_alice_and_bob_decrypt_decode_and_fill_the_call() -> None:
    alice, bob = read_udp(corpus_file(ALICE[0])), read_udp(corpus_file(BOB[0]))
    start = min(alice[0].time, bob[0].time)
    end = max(alice[-1].time, bob[-1].time)
    media = MediaSession(start=start)
    streams = [
        (media.add_stream(channel=0, formats=G722, srtp=_receiver(ALICE[1])), alice),
        (media.add_stream(channel=1, formats=G722, srtp=_receiver(BOB[1])), bob),
    ]
    for stream, datagrams in streams:
        for datagram in datagrams:
            stream.receive_datagram(datagram.payload, now=datagram.time)
    result = media.finish(end=end)
    assert result.sample_rate == 16000
    assert abs(len(result.stereo) / 16000 - (end - start)) <= 0.020
    figures = [(q.expected, q.received, q.lost, q.srtp_auth_failures) for q in result.quality]
    assert figures == [(1556, 1556, 0, 0), (1564, 1564, 0, 0)]
    assert not result.one_way
    assert np.abs(result.stereo.astype(np.int32)).mean(axis=0).min() > 100  # both sides speak


def test_wrong_key_counts_every_packet_as_an_auth_failure() -> None:
    receiver = _receiver(BOB[1])
    results = [receiver.unprotect(d.payload) for d in read_udp(corpus_file(ALICE[0]))]
    assert results == [None] * ALICE[2]
    assert receiver.auth_failures == ALICE[2]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_decrypted_g722_matches_the_ffmpeg_cli() -> None:
    receiver = _receiver(ALICE[1])
    payloads = []
    for datagram in read_udp(corpus_file(ALICE[0])):
        plain = receiver.unprotect(datagram.payload)
        assert plain is not None
        payloads.append(parse_rtp(plain).payload)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "g722", "-i", "-", "-f", "s16le", "-ac", "1", "-"],
        input=b"".join(payloads),
        capture_output=True,
        check=True,
    ).stdout
    reference = np.frombuffer(decoded, dtype="<i2").astype(np.int32)
    media = MediaSession(start=0.0)
    stream = media.add_stream(channel=0, formats=G722)
    for index, payload in enumerate(payloads):  # perfectly paced, no loss: placement is exact
        header = bytes([0x80, 9]) + index.to_bytes(2, "big") + (index * 160).to_bytes(4, "big")
        stream.receive_datagram(header + bytes(4) + payload, now=index * 0.02)
    ours = media.finish(end=len(payloads) * 0.02).stereo[:, 0].astype(np.int32)
    assert len(ours) == len(reference) == len(payloads) * 320
    assert np.max(np.abs(ours - reference)) <= 1
