"""Synthetic calls and messages filed through the real filing path.

Later work (and the demo) uses these to seed an archive without a capture path. Nothing is faked
past the input: the audio is real FLAC, sealed, stored, read back, indexed and audited exactly as a
captured call would be.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import numpy as np
import soundfile

from tapeline.archive.core import Archive
from tapeline.archive.filing import (
    Filer,
    MediaIn,
    MessageIn,
    NewInteraction,
    PartyIn,
    RecordingIn,
    StreamIn,
)

SAMPLE_RATE = 8000
AMPLITUDE = 8000


def tone_stereo(seconds: float, *, left_hz: float = 440.0, right_hz: float = 660.0) -> np.ndarray:
    """Two sine tones, one per channel, as int16 frames."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    left = AMPLITUDE * np.sin(2 * np.pi * left_hz * t)
    right = AMPLITUDE * np.sin(2 * np.pi * right_hz * t)
    return np.stack([left, right], axis=1).astype(np.int16)


def flac_bytes(frames: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode int16 frames as FLAC."""
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def file_synthetic_call(  # noqa: PLR0913  # the facts a test wants to choose
    archive: Archive,
    *,
    line: str,
    counterparty: str,
    started_at: datetime,
    seconds: float = 3.0,
    direction: str = "inbound",
    tags: list[str] | None = None,
    retention_class: str | None = None,
    source_path: str = "synthetic",
    quality: dict[str, int] | None = None,
) -> str:
    """File a two-party call with a tone per channel; returns the interaction id.

    `source_path` and `quality` (each stream's figures, e.g. `expected` and `lost` packets) let a
    test stand in for a captured call, as the capture-loss alarm reads them.
    """
    frames = tone_stereo(seconds)
    figures = quality or {"lost": 0}
    return Filer(archive, component="synthetic").file(
        NewInteraction(
            channel="voice",
            kind="call",
            direction=direction,
            started_at=started_at,
            ended_at=started_at + timedelta(seconds=seconds),
            source_path=source_path,
            line_number=line,
            counterparty=counterparty,
            participants=[
                PartyIn(role="employee", identifier=line),
                PartyIn(role="counterparty", identifier=counterparty),
            ],
            streams=[
                StreamIn(label="1", codec="PCMU", channel=0, quality=dict(figures)),
                StreamIn(label="2", codec="PCMU", channel=1, quality=dict(figures)),
            ],
            recording=RecordingIn(
                data=flac_bytes(frames),
                format="flac",
                sample_rate=SAMPLE_RATE,
                channels=2,
                duration_ms=round(seconds * 1000),
                channel_map=[
                    {"channel": 0, "role": "employee"},
                    {"channel": 1, "role": "counterparty"},
                ],
            ),
            outcome="answered",
            tags=tags or [],
            retention_class=retention_class,
            sip_call_id=None,
        )
    )


def file_synthetic_message(  # noqa: PLR0913  # the facts a test wants to choose
    archive: Archive,
    *,
    line: str,
    counterparty: str,
    started_at: datetime,
    text: str,
    wamid: str | None = None,
    direction: str = "inbound",
    status: str = "received",
    media: list[MediaIn] | None = None,
    counterparty_name: str | None = None,
) -> str:
    """File a WhatsApp message (text, with media attachments when given); returns its id."""
    return Filer(archive, component="synthetic").file(
        NewInteraction(
            channel="whatsapp",
            kind="message",
            direction=direction,
            started_at=started_at,
            source_path="synthetic",
            line_number=line,
            counterparty=counterparty,
            counterparty_name=counterparty_name,
            participants=[
                PartyIn(role="employee", identifier=line),
                PartyIn(
                    role="counterparty", identifier=counterparty, display_name=counterparty_name
                ),
            ],
            message=MessageIn(
                wamid=wamid, type="image" if media else "text", text=text, status=status
            ),
            media=media or [],
            outcome="received",
        )
    )
