"""Codec decoders against independent oracles: sox for G.711, the ffmpeg CLI for G.722."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tapeline.media.codecs import (
    DecodeError,
    UnsupportedCodecError,
    codec_info,
    create_decoder,
)
from tapeline.media.codecs.amr import amr_to_storage

needs_sox = pytest.mark.usefixtures("need_sox")
needs_ffmpeg = pytest.mark.usefixtures("need_ffmpeg")


def _tone(rate: int, seconds: float, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")


def _sox_decode(kind: str, payload: bytes) -> np.ndarray:
    out = subprocess.run(
        ["sox", "-t", kind, "-r", "8000", "-c", "1", "-", "-t", "s16", "-e", "signed", "-L", "-"],
        input=payload,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, dtype="<i2")


@needs_sox
@pytest.mark.parametrize(("name", "kind"), [("PCMU", "ul"), ("PCMA", "al")])
def test_g711_equals_sox_on_every_code_and_a_payload(name: str, kind: str) -> None:
    payload = bytes(range(256)) + bytes(np.random.default_rng(7).integers(0, 256, 4000, np.uint8))
    decoder = create_decoder(name)
    ours = np.concatenate([decoder.decode(payload[i : i + 160]) for i in range(0, 4256, 160)])
    np.testing.assert_array_equal(ours, _sox_decode(kind, payload))
    assert decoder.sample_rate == 8000


@needs_ffmpeg
def test_g722_decodes_at_16k_close_to_ffmpeg_cli() -> None:
    pcm = _tone(16000, 1.0).tobytes()
    coded = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "s16le",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-i",
            "-",
            "-c:a",
            "g722",
            "-f",
            "g722",
            "-",
        ],
        input=pcm,
        capture_output=True,
        check=True,
    ).stdout
    reference = np.frombuffer(
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "g722", "-i", "-", "-f", "s16le", "-ac", "1", "-"],
            input=coded,
            capture_output=True,
            check=True,
        ).stdout,
        dtype="<i2",
    )
    decoder = create_decoder("g722")
    # 20 ms = 160 payload octets = 320 samples at 16 kHz (RTP clock stays 8000, RFC 3551 §4.5.2).
    frames = [decoder.decode(coded[i : i + 160]) for i in range(0, len(coded), 160)]
    assert {len(f) for f in frames[:-1]} == {320}
    ours = np.concatenate(frames)
    assert decoder.sample_rate == 16000
    assert len(ours) == len(reference)
    assert np.max(np.abs(ours.astype(int) - reference.astype(int))) <= 1


def test_g729_two_frames_give_20_ms() -> None:
    decoder = create_decoder("G729")
    assert len(decoder.decode(bytes(20))) == 160
    assert decoder.decode(b"").size == 0
    np.testing.assert_array_equal(decoder.conceal(80), np.zeros(80, np.int16))


def test_gsm_frame_gives_20_ms() -> None:
    assert len(create_decoder("GSM").decode(bytes([0xD0]) + bytes(32))) == 160


def test_opus_encoded_tone_decodes_to_16k() -> None:
    import av  # noqa: PLC0415  # only this test encodes

    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = 48000
    encoder.layout = "mono"
    encoder.format = "s16"
    frame = av.AudioFrame.from_ndarray(_tone(48000, 0.02).reshape(1, -1), format="s16")
    frame.sample_rate = 48000
    frame.pts = 0
    packets = [bytes(p) for p in encoder.encode(frame)] + [bytes(p) for p in encoder.encode(None)]
    decoder = create_decoder("opus", channels=2)
    samples = np.concatenate([decoder.decode(p) for p in packets])
    assert decoder.sample_rate == 16000
    assert 0 < len(samples) <= 3 * 320


def test_unknown_codec_is_unsupported() -> None:
    with pytest.raises(UnsupportedCodecError, match="no decoder for 'EVS'"):
        create_decoder("EVS")
    assert codec_info("amr-wb").wideband
    assert not codec_info("pcmu").wideband


def test_truncated_amr_payload_raises_decode_error_with_cause() -> None:
    decoder = create_decoder("AMR")
    with pytest.raises(DecodeError, match=r"^amrnb payload could not be decoded$") as caught:
        decoder.decode(b"\xf0")
    assert str(caught.value.__cause__) == "AMR payload is truncated"


def test_amr_octet_aligned_payload_to_storage() -> None:
    # CMR 15, one ToC: F=0 FT=7 (12.2 kbit/s, 244 bits = 31 octets) Q=1, then the frame.
    speech = bytes(range(31))
    storage = amr_to_storage(
        b"\xf0" + bytes([7 << 3 | 1 << 2]) + speech, wideband=False, octet_aligned=True
    )
    # 244 bits end mid-octet: the 4 padding bits of the last octet become zero.
    assert storage == bytes([7 << 3 | 1 << 2]) + speech[:-1] + bytes([speech[-1] & 0xF0])


def test_amr_bandwidth_efficient_payload_to_storage() -> None:
    # CMR(4)=15, ToC(6): F=0 FT=8 (SID, 39 bits) Q=1, then 39 bits of ones: 49 bits in 7 octets.
    bits = "1111" + "0" + "1000" + "1" + "1" * 39
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    storage = amr_to_storage(payload, wideband=False, octet_aligned=False)
    assert storage == bytes([8 << 3 | 1 << 2]) + (((1 << 39) - 1) << 1).to_bytes(5, "big")
    no_data = amr_to_storage(bytes([0xF7, 0xC0]), wideband=True, octet_aligned=False)
    assert no_data == bytes([15 << 3 | 1 << 2])
    with pytest.raises(DecodeError, match="AMR frame type is reserved"):
        amr_to_storage(bytes([0xF6, 0x40]), wideband=False, octet_aligned=False)
