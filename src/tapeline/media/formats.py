"""RTP payload formats as SDP negotiates them (RFC 8866 §6.6 rtpmap/fmtp; RFC 3551 §6 statics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

TELEPHONE_EVENT: Final = "TELEPHONE-EVENT"  # RFC 4733
COMFORT_NOISE: Final = "CN"  # RFC 3389


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadFormat:
    """One `a=rtpmap` line (with its `a=fmtp`), or a static payload type without one.

    Attributes:
        payload_type: 0-127.
        encoding_name: as in the rtpmap, any case ("PCMU", "opus", "telephone-event").
        clock_rate: the RTP timestamp clock (G.722 says 8000 although its audio is 16 kHz).
        channels: the rtpmap channel count (Opus always says 2).
        fmtp: format parameters, e.g. {"octet-align": "1"}.
    """

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        """The encoding name in upper case, as the codec registry keys it."""
        return self.encoding_name.upper()


# RFC 3551 §6 Table 4: the audio payload types SRCs send without an rtpmap line.
STATIC_FORMATS: Final = {
    f.payload_type: f
    for f in (
        PayloadFormat(payload_type=0, encoding_name="PCMU", clock_rate=8000),
        PayloadFormat(payload_type=3, encoding_name="GSM", clock_rate=8000),
        PayloadFormat(payload_type=4, encoding_name="G723", clock_rate=8000),
        PayloadFormat(payload_type=8, encoding_name="PCMA", clock_rate=8000),
        PayloadFormat(payload_type=9, encoding_name="G722", clock_rate=8000),
        PayloadFormat(payload_type=13, encoding_name=COMFORT_NOISE, clock_rate=8000),
        PayloadFormat(payload_type=18, encoding_name="G729", clock_rate=8000),
    )
}
