"""The package's audio conversions and measures (wyoming_kokoro_gguf/audio.py)."""

from __future__ import annotations

import numpy as np
import pytest

from wyoming_kokoro_gguf.audio import duration_change, log_spectral_distance, to_int16


def test_int16_clips_and_silences_what_is_not_a_number() -> None:
    samples = np.array([0.0, 0.5, -0.5, 2.0, -2.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    with np.errstate(invalid="raise"):  # a NaN cast to int16 is undefined (platform's choice)
        assert to_int16(samples).tolist() == [0, 16383, -16383, 32767, -32767, 32767, -32767, 0]


def test_log_spectral_distance_of_a_gain_and_of_too_short_clips() -> None:
    x = np.random.default_rng(1).standard_normal(24000)
    assert log_spectral_distance(x, 2 * x) == pytest.approx(10 * np.log10(4), abs=1e-3)
    assert np.isnan(log_spectral_distance(x[:100], x[:100]))


def test_duration_change_counts_moved_frames() -> None:
    assert duration_change(np.array([2, 3, 5]), np.array([2, 4, 3])) == 0.3
