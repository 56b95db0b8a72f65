"""What a change to the weights costs in the audio: waveform SNR and log-spectral distance.

Both against the f32 audio of the same tokens on the same durations (so the clips have the same
length and alignment).  The definitions are script/benchmark.py's, so figures compare.
"""

from __future__ import annotations

import numpy as np


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Waveform SNR of ``test`` against ``ref`` over their common length, in dB."""
    n = min(len(ref), len(test))
    a, b = ref[:n].astype(np.float64), test[:n].astype(np.float64)
    return float(10 * np.log10(np.sum(a**2) / max(np.sum((a - b) ** 2), 1e-12)))


def log_spectral_distance(a: np.ndarray, b: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of the RMS difference of log power spectra (dB), common length.

    Insensitive to phase, so it still says something when the harmonic source's F0 drifts."""
    n = min(len(a), len(b))
    if n < n_fft:
        return 0.0 if n == 0 or np.array_equal(a[:n], b[:n]) else float("inf")
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    window = np.hanning(n_fft)

    def spec(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
        return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)

    sa, sb = spec(a), spec(b)
    return float(np.mean(np.sqrt(np.mean((sa - sb) ** 2, axis=1))))


def duration_change(ref: np.ndarray, test: np.ndarray) -> float:
    """Frames moved by changed durations, as a fraction of the reference's frames."""
    ref = np.asarray(ref, dtype=np.int64).ravel()
    test = np.asarray(test, dtype=np.int64).ravel()
    return float(np.abs(ref - test).sum() / max(int(ref.sum()), 1))
