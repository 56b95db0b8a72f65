"""The audio every part of the package speaks: Kokoro's output format, float -> int16, and how far
one clip is from another (the measures the plan's guard, the quantization table, the benchmark
and the add-on check share, so their figures compare)."""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 24000  # Hz; Kokoro's vocoder output rate
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM on the wire and in WAV files
CHANNELS = 1


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, clipped (one rounding rule for the engine and the server).

    A sample that is not a number (a broken or badly quantized model's) becomes silence, never the
    arbitrary value a NaN casts to; infinities clip like any loud sample."""
    samples = np.asarray(audio, dtype=np.float32).ravel()
    samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return (samples * 32767.0).astype(np.int16)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Waveform SNR of ``test`` against ``ref`` over their common length (inf when equal)."""
    n = min(len(ref), len(test))
    a, b = ref[:n].astype(np.float64), test[:n].astype(np.float64)
    with np.errstate(all="ignore"):  # non-finite audio gives NaN: "not comparable"
        noise = float(np.sum((a - b) ** 2))
        if noise == 0.0:
            return math.inf
        return float(10 * np.log10(max(float(np.sum(a**2)), 1e-30) / noise))


def log_spectral_distance(a: np.ndarray, b: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of the RMS difference of log power spectra (dB), common length;
    phase-blind, so a small pitch drift does not dominate it."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    if n < n_fft:
        return float("nan")
    window = np.hanning(n_fft)

    def spec(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
        return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)

    with np.errstate(all="ignore"):
        return float(np.mean(np.sqrt(np.mean((spec(a) - spec(b)) ** 2, axis=1))))


def duration_change(ref: np.ndarray, test: np.ndarray) -> float:
    """Frames moved by changed durations, as a fraction of the reference's frames."""
    ref = np.asarray(ref, dtype=np.int64).ravel()
    test = np.asarray(test, dtype=np.int64).ravel()
    return float(np.abs(ref - test).sum() / max(int(ref.sum()), 1))
