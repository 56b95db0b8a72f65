"""The audio every part of the package speaks: Kokoro's output format, and float -> int16."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 24000  # Hz; Kokoro's vocoder output rate
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM on the wire and in WAV files
CHANNELS = 1


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, clipped (one rounding rule for the engine and the server)."""
    samples = np.clip(np.asarray(audio, dtype=np.float32).ravel(), -1.0, 1.0)
    return (samples * 32767.0).astype(np.int16)
