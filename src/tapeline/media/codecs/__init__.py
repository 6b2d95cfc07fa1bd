"""Audio decoders behind one interface, looked up by RTP encoding name."""

from tapeline.media.codecs.base import DecodeError, Decoder, Samples, silence
from tapeline.media.codecs.registry import (
    CODECS,
    CodecInfo,
    UnsupportedCodecError,
    codec_info,
    create_decoder,
)

__all__ = [
    "CODECS",
    "CodecInfo",
    "DecodeError",
    "Decoder",
    "Samples",
    "UnsupportedCodecError",
    "codec_info",
    "create_decoder",
    "silence",
]
