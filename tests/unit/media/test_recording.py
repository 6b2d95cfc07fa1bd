"""Stereo interleave and FLAC/Opus encoding into memory."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from tapeline.media.quality import StreamQuality, is_one_way
from tapeline.media.recording import encode_flac, encode_opus, interleave, opus_supported


def _tone(length: int) -> np.ndarray:
    return (10000 * np.sin(np.arange(length) / 5)).astype(np.int16)


def test_interleave_pads_the_shorter_channel() -> None:
    stereo = interleave(np.array([1, 2, 3], np.int16), np.array([9], np.int16))
    assert stereo.tolist() == [[1, 9], [2, 0], [3, 0]]


def test_flac_round_trip_is_lossless() -> None:
    stereo = interleave(_tone(8000), _tone(8000)[::-1].copy())
    data = encode_flac(stereo, 8000)
    assert data[:4] == b"fLaC"
    decoded, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(decoded, stereo)


def test_opus_encodes_an_ogg_file_of_the_right_length() -> None:
    assert opus_supported(), "storage.format = opus needs a libsndfile with Ogg/Opus"
    stereo = interleave(_tone(16000), _tone(16000))
    data = encode_opus(stereo, 16000)
    assert data[:4] == b"OggS"
    info = soundfile.info(io.BytesIO(data))
    assert (info.channels, info.subtype) == (2, "OPUS")
    assert abs(info.frames / info.samplerate - 1.0) < 0.03


def test_opus_rejects_a_rate_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="Opus cannot encode at 44100 Hz"):
        encode_opus(interleave(_tone(10), _tone(10)), 44100)


def _quality(channel: int, received: int) -> StreamQuality:
    return StreamQuality(
        channel=channel,
        expected=received,
        received=received,
        lost=0,
        duplicates=0,
        jitter_ms=0.0,
        max_jitter_ms=0.0,
        longest_gap_ms=20.0,
    )


def test_one_way_needs_two_channels_and_only_one_heard() -> None:
    assert is_one_way([_quality(0, 500), _quality(1, 3)])
    assert not is_one_way([_quality(0, 500), _quality(1, 500)])
    assert not is_one_way([_quality(0, 500)])
    assert not is_one_way([_quality(0, 0), _quality(1, 0)])
    assert is_one_way([_quality(0, 20), _quality(0, 40), _quality(1, 0)])
