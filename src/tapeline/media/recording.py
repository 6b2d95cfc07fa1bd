"""Two channels to one stereo recording file (DESIGN §4 step 5).

Channel 0 is the recorded employee line and channel 1 the external party; which stream goes to
which channel is decided by the caller. FLAC (lossless, the default) and Ogg/Opus are written by
libsndfile through `soundfile` into memory, so the caller can hash and encrypt the bytes before
anything reaches a disk. Encoding is CPU work: adapters run it in a thread (style.md §2.3).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

import numpy as np
import soundfile

if TYPE_CHECKING:
    import numpy.typing as npt

    from tapeline.media.codecs import Samples

OPUS_RATES: Final = frozenset({8000, 12000, 16000, 24000, 48000})


def interleave(channel_0: Samples, channel_1: Samples) -> npt.NDArray[np.int16]:
    """Join two mono channels into one (frames, 2) array, padding the shorter with silence.

    Args:
        channel_0: the employee line.
        channel_1: the external party.

    Returns:
        int16 samples, shape (max length, 2).
    """
    length = max(len(channel_0), len(channel_1))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(channel_0), 0] = channel_0
    stereo[: len(channel_1), 1] = channel_1
    return stereo


def encode_flac(stereo: npt.NDArray[np.int16], sample_rate: int) -> bytes:
    """Encode interleaved int16 samples as 16-bit FLAC.

    Args:
        stereo: shape (frames, channels).
        sample_rate: in Hz.

    Returns:
        The FLAC file's bytes.
    """
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def opus_supported() -> bool:
    """Tell whether the installed libsndfile writes Ogg/Opus (libsndfile 1.0.29 and later)."""
    return "OPUS" in soundfile.available_subtypes("OGG")


def encode_opus(stereo: npt.NDArray[np.int16], sample_rate: int) -> bytes:
    """Encode interleaved int16 samples as Ogg/Opus (lossy; libsndfile's default bitrate).

    Args:
        stereo: shape (frames, channels).
        sample_rate: one of the rates Opus accepts (8, 12, 16, 24 or 48 kHz).

    Returns:
        The Ogg file's bytes.

    Raises:
        ValueError: the rate is not an Opus rate, or libsndfile has no Opus support.
    """
    if sample_rate not in OPUS_RATES:
        raise ValueError(f"Opus cannot encode at {sample_rate} Hz")
    if not opus_supported():
        raise ValueError("this libsndfile cannot write Ogg/Opus")
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, sample_rate, format="OGG", subtype="OPUS")
    return buffer.getvalue()
