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
    mine, theirs = _decode(ours), _decode(sox)
    step = np.abs(samples.astype(np.int32)) // 16 + 8  # one µ-law quantisation step, generously
    assert np.all(np.abs(mine - theirs) <= step)
    assert np.count_nonzero(mine != theirs) < len(samples) // 100


def _decode(ulaw: bytes) -> np.ndarray:
    raw = subprocess.run(
        ["sox", "-t", "ul", "-r", "8000", "-c", "1", "-", "-t", "s16", "-"],
        input=ulaw,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, "<i2").astype(np.int32)
