"""Decoders by RTP encoding name (RFC 3551 §6 static names, RFC 4855 media type names).

`create_decoder` is the one way the pipeline gets a decoder: G.711 by table, the rest through
FFmpeg. `CODECS` says for each name the audio rate the decoder returns, which tells the timeline
whether a call is wideband (16 kHz output) or narrowband (8 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from tapeline.media.codecs.amr import amr_to_storage
from tapeline.media.codecs.ffmpeg import FfmpegDecoder
from tapeline.media.codecs.g711 import G711Decoder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tapeline.media.codecs.base import Decoder

NARROWBAND_RATE: Final = 8000
WIDEBAND_RATE: Final = 16000
OPUS_RTP_RATE: Final = 48000


class UnsupportedCodecError(LookupError):
    """No decoder exists for an encoding name (the stream is recorded as undecodable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecInfo:
    """What the pipeline needs to know about one encoding before it sees a packet."""

    name: str
    sample_rate: int
    factory: Callable[[int, Mapping[str, str]], Decoder]

    @property
    def wideband(self) -> bool:
        """True when decoded audio is above 8 kHz."""
        return self.sample_rate > NARROWBAND_RATE


def _g711(*, alaw: bool) -> Callable[[int, Mapping[str, str]], Decoder]:
    return lambda _channels, _fmtp: G711Decoder(alaw=alaw)


def _ffmpeg(codec: str, rate: int, *, input_rate: int | None = None) -> Callable[..., Decoder]:
    def factory(channels: int, _fmtp: Mapping[str, str]) -> Decoder:
        return FfmpegDecoder(
            codec, input_rate=input_rate or rate, output_rate=rate, channels=channels
        )

    return factory


def _amr(codec: str, *, wideband: bool) -> Callable[[int, Mapping[str, str]], Decoder]:
    def factory(_channels: int, fmtp: Mapping[str, str]) -> Decoder:
        rate = WIDEBAND_RATE if wideband else NARROWBAND_RATE
        depacketize = partial(
            amr_to_storage, wideband=wideband, octet_aligned=fmtp.get("octet-align") == "1"
        )
        return FfmpegDecoder(codec, input_rate=rate, output_rate=rate, depacketize=depacketize)

    return factory


CODECS: Final[Mapping[str, CodecInfo]] = {
    info.name: info
    for info in (
        CodecInfo(name="PCMU", sample_rate=NARROWBAND_RATE, factory=_g711(alaw=False)),
        CodecInfo(name="PCMA", sample_rate=NARROWBAND_RATE, factory=_g711(alaw=True)),
        CodecInfo(name="G722", sample_rate=WIDEBAND_RATE, factory=_ffmpeg("g722", WIDEBAND_RATE)),
        CodecInfo(name="G729", sample_rate=NARROWBAND_RATE, factory=_ffmpeg("g729", 8000)),
        CodecInfo(name="G723", sample_rate=NARROWBAND_RATE, factory=_ffmpeg("g723_1", 8000)),
        CodecInfo(name="GSM", sample_rate=NARROWBAND_RATE, factory=_ffmpeg("gsm", 8000)),
        CodecInfo(
            name="OPUS",
            sample_rate=WIDEBAND_RATE,
            factory=_ffmpeg("opus", WIDEBAND_RATE, input_rate=OPUS_RTP_RATE),
        ),
        CodecInfo(name="AMR", sample_rate=NARROWBAND_RATE, factory=_amr("amrnb", wideband=False)),
        CodecInfo(name="AMR-WB", sample_rate=WIDEBAND_RATE, factory=_amr("amrwb", wideband=True)),
    )
}


def codec_info(encoding_name: str) -> CodecInfo:
    """Look an encoding up by its SDP rtpmap name (case-insensitive).

    Args:
        encoding_name: e.g. "PCMU", "G722", "opus", "AMR-WB".

    Returns:
        The codec's description.

    Raises:
        UnsupportedCodecError: no decoder for that name.
    """
    try:
        return CODECS[encoding_name.upper()]
    except KeyError:
        raise UnsupportedCodecError(f"no decoder for {encoding_name!r}") from None


def create_decoder(
    encoding_name: str, *, channels: int = 1, fmtp: Mapping[str, str] | None = None
) -> Decoder:
    """Build a fresh decoder for one stream segment.

    Args:
        encoding_name: the rtpmap encoding name.
        channels: channel count from the rtpmap (Opus says 2; output is always mono).
        fmtp: the format parameters (AMR `octet-align`), if any.

    Returns:
        A new decoder.

    Raises:
        UnsupportedCodecError: no decoder for that name.
    """
    return codec_info(encoding_name).factory(channels, fmtp or {})
