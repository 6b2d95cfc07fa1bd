"""A finished call's media as the one filing path's recording: shared by SIPREC and the tap.

Both capture paths render through the same media pipeline (`MediaSession.finish`) and file
through the same `Filer`; this is the one step between them, so a recording is encoded, sized
and channel-mapped the same way whichever path heard the call.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tapeline.archive.filing import RecordingIn
from tapeline.media.quality import StreamQuality
from tapeline.media.recording import encode_flac, encode_opus
from tapeline.media.session import MediaResult

EMPLOYEE_OTHER: list[dict[str, Any]] = [
    {"channel": 0, "role": "employee"},
    {"channel": 1, "role": "counterparty"},
]


def stereo_recording(
    result: MediaResult, storage_format: str, channel_map: list[dict[str, Any]] | None = None
) -> RecordingIn:
    """Encode the rendered stereo as `storage.format` (FLAC, or Ogg/Opus) for filing."""
    encode = encode_opus if storage_format == "opus" else encode_flac
    return RecordingIn(
        data=encode(result.stereo, result.sample_rate),
        format=storage_format,
        sample_rate=result.sample_rate,
        channels=2,
        duration_ms=round(len(result.stereo) * 1000 / result.sample_rate),
        channel_map=channel_map if channel_map is not None else EMPLOYEE_OTHER,
    )


def quality_figures(quality: StreamQuality) -> dict[str, Any]:
    """A stream's quality figures as filed (the SSRC list is filed separately)."""
    return {k: v for k, v in asdict(quality).items() if k != "ssrcs"}
