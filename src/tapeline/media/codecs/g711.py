"""G.711 μ-law (PCMU) and A-law (PCMA) decoding by lookup table (ITU-T G.711, RFC 3551 §4.5.14).

Strategy: each table has 256 entries built once by the bit-exact expansion rules of ITU-T G.711
(the same arithmetic as the reference `g711.c` that sox and FFmpeg use), scaled to 16 bits; a
payload decodes with one vectorised numpy take, so G.711 never needs FFmpeg.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from tapeline.media.codecs.base import Samples, silence

G711_SAMPLE_RATE: Final = 8000
_SIGN_BIT: Final = 0x80
_SEGMENT_MASK: Final = 0x70
_SEGMENT_SHIFT: Final = 4
_QUANT_MASK: Final = 0x0F
_ULAW_BIAS: Final = 0x84
_ALAW_TOGGLE: Final = 0x55


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = ((code & _QUANT_MASK) << 3) + _ULAW_BIAS
    magnitude <<= (code & _SEGMENT_MASK) >> _SEGMENT_SHIFT
    return _ULAW_BIAS - magnitude if code & _SIGN_BIT else magnitude - _ULAW_BIAS


def _alaw_to_linear(code: int) -> int:
    code ^= _ALAW_TOGGLE
    magnitude = (code & _QUANT_MASK) << 4
    segment = (code & _SEGMENT_MASK) >> _SEGMENT_SHIFT
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & _SIGN_BIT else -magnitude


ULAW_TABLE: Final = np.array([_ulaw_to_linear(code) for code in range(256)], dtype=np.int16)
ALAW_TABLE: Final = np.array([_alaw_to_linear(code) for code in range(256)], dtype=np.int16)
ULAW_TABLE.flags.writeable = False
ALAW_TABLE.flags.writeable = False


class G711Decoder:
    """Stateless PCMU or PCMA decoder: one sample per payload octet at 8 kHz."""

    def __init__(self, *, alaw: bool) -> None:
        self._table = ALAW_TABLE if alaw else ULAW_TABLE

    @property
    def sample_rate(self) -> int:
        """Always 8000 Hz."""
        return G711_SAMPLE_RATE

    def decode(self, payload: bytes) -> Samples:
        """Decode every octet through the table; never raises."""
        return self._table[np.frombuffer(payload, dtype=np.uint8)]

    def conceal(self, samples: int) -> Samples:
        """Silence: G.711 has no packet loss concealment of its own (Appendix I is not used)."""
        return silence(samples)
