from __future__ import annotations

import subprocess

import numpy as np

from tapeline.daemon.siprec.selftest import ulaw_encode


def test_ulaw_encoder_agrees_with_sox_for_every_16_bit_value() -> None:
    """G.711 truncates; sox rounds to the nearest level: codes may differ by one step, no more."""
    samples = np.arange(-32768, 32768, dtype=np.int16)
    ours = ulaw_encode(samples)
    sox = subprocess.run(
        ["sox", "-D", "-t", "s16", "-r", "8000", "-c", "1", "-", "-t", "ul", "-"],
        input=samples.astype("<i2").tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    assert len(ours) == len(sox)
    a = np.frombuffer(ours, np.uint8).astype(np.int32)
    b = np.frombuffer(sox, np.uint8).astype(np.int32)
    assert np.abs(a - b).max() <= 1
    assert np.count_nonzero(a != b) < len(samples) // 100
