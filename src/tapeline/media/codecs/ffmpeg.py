"""Decoders backed by FFmpeg through PyAV: G.722, G.729, G.723.1, GSM, Opus, AMR, AMR-WB.

Each instance owns one FFmpeg decoder context, fed one RTP payload per `decode` call (after any
RTP depacketising, see `tapeline.media.codecs.amr`). FFmpeg returns planar or packed int16 or
float frames; they are mixed down to mono int16 and, where the codec's native rate is not the rate
we record at (Opus: always 48 kHz, RFC 7587 §4.1), resampled by FFmpeg's own resampler.
Concealment is silence: FFmpeg's decoders here have no loss concealment reachable from PyAV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import av
import numpy as np

from tapeline.media.codecs.base import DecodeError, Samples, silence

if TYPE_CHECKING:
    from collections.abc import Callable


class FfmpegDecoder:
    """One FFmpeg audio decoder producing mono int16 at `sample_rate`.

    Args:
        codec: FFmpeg decoder name, e.g. "g722".
        input_rate: the rate FFmpeg is told the stream has (G.722: 16000, Opus: 48000).
        output_rate: the rate `decode` returns; FFmpeg's resampler converts when it differs.
        channels: channel count of the coded stream.
        depacketize: turns an RTP payload into what the FFmpeg decoder expects (AMR), if needed.
    """

    def __init__(
        self,
        codec: str,
        *,
        input_rate: int,
        output_rate: int,
        channels: int = 1,
        depacketize: Callable[[bytes], bytes] | None = None,
    ) -> None:
        context = av.CodecContext.create(codec, "r")
        if not isinstance(context, av.AudioCodecContext):
            raise TypeError(f"{codec} is not an audio codec")
        context.sample_rate = input_rate
        context.layout = "stereo" if channels > 1 else "mono"
        self._context = context
        self._output_rate = output_rate
        self._depacketize = depacketize
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=output_rate)

    @property
    def sample_rate(self) -> int:
        """The rate given as `output_rate`."""
        return self._output_rate

    def decode(self, payload: bytes) -> Samples:
        """Decode one payload; see `Decoder.decode`.

        Raises:
            DecodeError: FFmpeg rejected the payload.
        """
        if not payload:
            return silence(0)
        try:
            data = self._depacketize(payload) if self._depacketize else payload
            chunks = [
                resampled.to_ndarray().reshape(-1)
                for frame in self._context.decode(av.Packet(data))
                for resampled in self._resampler.resample(frame)
            ]
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeError(f"{self._context.name} payload could not be decoded") from exc
        if not chunks:
            return silence(0)
        return np.concatenate(chunks).astype(np.int16, copy=False)

    def conceal(self, samples: int) -> Samples:
        """Silence."""
        return silence(samples)
