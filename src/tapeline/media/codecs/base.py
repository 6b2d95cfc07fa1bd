"""The one interface every audio decoder offers the media pipeline (DESIGN §4 step 4).

A decoder turns one RTP payload into mono int16 samples at its own `sample_rate`, which is the
audio rate and not necessarily the RTP clock (G.722: RTP clock 8000, audio 16 kHz, RFC 3551
§4.5.2; Opus: RTP clock 48000, decoded here to 16 kHz). Decoders keep state between payloads, so
one stream (one SSRC segment) gets its own instance.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

Samples: TypeAlias = npt.NDArray[np.int16]


class DecodeError(ValueError):
    """A payload the codec cannot decode; the pipeline counts it and conceals the frame."""


class Decoder(Protocol):
    """Decodes the RTP payloads of one stream."""

    @property
    def sample_rate(self) -> int:
        """Rate of the samples `decode` returns, in Hz."""
        ...

    def decode(self, payload: bytes) -> Samples:
        """Decode one RTP payload into mono int16 samples.

        Args:
            payload: the RTP payload (after SRTP unprotect and padding removal).

        Returns:
            The samples; empty for a payload that carries no audio.

        Raises:
            DecodeError: the payload is not valid for this codec.
        """
        ...

    def conceal(self, samples: int) -> Samples:
        """Produce `samples` samples to stand in for lost audio."""
        ...


def silence(samples: int) -> Samples:
    """Return `samples` zero samples (the concealment every decoder here uses)."""
    return np.zeros(max(samples, 0), dtype=np.int16)
