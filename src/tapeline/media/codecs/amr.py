"""RTP payload format for AMR and AMR-WB (RFC 4867 §4.3, §4.4) to FFmpeg's storage format.

FFmpeg's AMR decoders take the RFC 4867 §5 storage format: per frame one header octet
(`0 FT(4) Q 0 0`) followed by the speech bits padded to an octet. RTP carries a CMR, a table of
contents (one entry per frame, F bit = more entries follow) and the frames, either each octet
aligned (`octet-align=1`, §4.4) or packed bit after bit (bandwidth-efficient, the default, §4.3).
"""

from __future__ import annotations

from typing import Final

from tapeline.media.codecs.base import DecodeError

# Speech bits per frame type (RFC 4867 §3.6 tables; 3GPP TS 26.101 / 26.201). Types 0-7 (AMR) or
# 0-8 (AMR-WB) are speech, the next is SID; 14 is speech lost and 15 is no data (zero bits).
AMR_NB_FRAME_BITS: Final = (95, 103, 118, 134, 148, 159, 204, 244, 39)
AMR_WB_FRAME_BITS: Final = (132, 177, 253, 285, 317, 365, 397, 461, 477, 40)
_NO_DATA: Final = 15
_SPEECH_LOST: Final = 14
_CMR_BITS: Final = 4
_TOC_BITS: Final = 6
_OCTET: Final = 8


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * _OCTET
        self.position = 0

    def read(self, bits: int) -> int:
        if self.position + bits > self._bits:
            raise DecodeError("AMR payload is truncated")
        self.position += bits
        return (self._value >> (self._bits - self.position)) & ((1 << bits) - 1)


def _frame_bits(frame_type: int, table: tuple[int, ...]) -> int:
    if frame_type < len(table):
        return table[frame_type]
    if frame_type in (_SPEECH_LOST, _NO_DATA):
        return 0
    raise DecodeError("AMR frame type is reserved")


def amr_to_storage(payload: bytes, *, wideband: bool, octet_aligned: bool) -> bytes:
    """Convert one RFC 4867 RTP payload (single channel) to the §5 storage format.

    Args:
        payload: the RTP payload.
        wideband: AMR-WB rather than AMR.
        octet_aligned: the SDP said `octet-align=1`.

    Returns:
        Concatenated storage-format frames, ready for FFmpeg.

    Raises:
        DecodeError: the payload is truncated or names a reserved frame type.
    """
    table = AMR_WB_FRAME_BITS if wideband else AMR_NB_FRAME_BITS
    reader = _BitReader(payload)
    align = _OCTET if octet_aligned else 1
    reader.read(_OCTET if octet_aligned else _CMR_BITS)  # CMR (+ reserved bits when aligned)
    entries: list[tuple[int, int]] = []
    more = True
    while more:
        more = bool(reader.read(1))
        frame_type = reader.read(4)
        quality = reader.read(1)
        if octet_aligned:
            reader.read(2)  # padding to the octet
        entries.append((frame_type, quality))
    frames = bytearray()
    for frame_type, quality in entries:
        bits = _frame_bits(frame_type, table)
        speech = reader.read(bits) if bits else 0
        octets = (bits + _OCTET - 1) // _OCTET
        frames.append(frame_type << 3 | quality << 2)
        frames += (speech << (octets * _OCTET - bits)).to_bytes(octets, "big")
        if octet_aligned:
            reader.read(-reader.position % align)
    return bytes(frames)
