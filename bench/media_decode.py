"""Decode speed: G.711 tables vs FFmpeg's pcm_mulaw, G.722/G.729 via PyAV, the whole pipeline.

Run from the repository root: `PYTHONPATH=src python bench/media_decode.py`. Prints seconds of
audio decoded per second of CPU and ratios against FFmpeg's own G.711 decoder measured in the
same invocation (DESIGN §8: ratios, not absolute timings).
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

import numpy as np

from tapeline.media.codecs import create_decoder
from tapeline.media.codecs.ffmpeg import FfmpegDecoder
from tapeline.media.formats import PayloadFormat
from tapeline.media.session import MediaSession

if TYPE_CHECKING:
    from collections.abc import Callable

SECONDS = 60
PACKETS = SECONDS * 50


def _rate(label: str, decode: Callable[[bytes], object], payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for payload in payloads:
        decode(payload)
    elapsed = time.perf_counter() - started
    speed = SECONDS / elapsed
    print(f"{label:<34} {speed:10.0f}x real time")
    return speed


def main() -> None:
    rng = np.random.default_rng(1)
    g711 = [bytes(rng.integers(0, 256, 160, np.uint8)) for _ in range(PACKETS)]
    g722 = [bytes(rng.integers(0, 256, 160, np.uint8)) for _ in range(PACKETS)]
    g729 = [bytes(rng.integers(0, 256, 20, np.uint8)) for _ in range(PACKETS)]
    reference = _rate(
        "PCMU via FFmpeg pcm_mulaw (ref)",
        FfmpegDecoder("pcm_mulaw", input_rate=8000, output_rate=8000).decode,
        g711,
    )
    table = _rate("PCMU via numpy table", create_decoder("PCMU").decode, g711)
    wide = _rate("G.722 via PyAV", create_decoder("G722").decode, g722)
    narrow = _rate("G.729 via PyAV", create_decoder("G729").decode, g729)
    media = MediaSession(start=0.0)
    pcmu = {0: PayloadFormat(payload_type=0, encoding_name="PCMU", clock_rate=8000)}
    streams = [media.add_stream(channel=c, formats=pcmu) for c in (0, 1)]
    started = time.perf_counter()
    for index, payload in enumerate(g711):
        header = struct.pack("!BBHII", 0x80, 0, index % 65536, index * 160, 1)
        for stream in streams:
            stream.receive_datagram(header + payload, index * 0.02)
    media.finish(end=SECONDS)
    pipeline = SECONDS / (time.perf_counter() - started)
    print(f"{'PCMU 2-channel pipeline + render':<34} {pipeline:10.0f}x real time")
    print(
        f"ratios to reference: table {table / reference:.2f}, G.722 {wide / reference:.2f}, "
        f"G.729 {narrow / reference:.2f}, pipeline {pipeline / reference:.2f}"
    )


if __name__ == "__main__":
    main()
