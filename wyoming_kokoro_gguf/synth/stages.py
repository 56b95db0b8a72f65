"""What runs between and around the engine's two ONNX Runtime sessions, for the engine and the
build (whose int8 calibration runs stage 1 too): the host's alignment step and heap release.

Kept apart from the graph builder (synth/build.py, synth/graph/) so that the engine's warm path,
which loads cached sessions, never imports onnx (docs/PERFORMANCE.md, "Start-up").
"""

from __future__ import annotations

import contextlib
import ctypes
import gc

import numpy as np
import onnxruntime as ort


def align(
    stage1: ort.InferenceSession,
    tokens: np.ndarray,
    style: np.ndarray,
    speed: float,
    durations: np.ndarray | None = None,
    run_options: ort.RunOptions | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stage 1 for padded tokens: frames per token (``durations`` replaces the predicted ones)
    and stage 2's inputs, each token's rows repeated for its frames."""
    inputs = {"tokens": tokens, "style": style, "speed": np.array([speed], dtype=np.float32)}
    predicted, d, t_en = stage1.run(None, inputs, run_options)
    if durations is None:
        durations = predicted
    durations = np.asarray(durations, dtype=np.int64).reshape(-1)
    index = np.repeat(np.arange(len(durations)), durations)
    return durations, {"en": d[index], "asr": t_en[index], "style": style}


def release_heap() -> None:
    """Return freed heap pages to the OS (glibc keeps them otherwise): load peaks are large."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def return_freed_blocks_at_once() -> None:
    """Have glibc serve blocks of 64 KiB and up from mmap and trim its heap past 64 KiB, so
    memory freed after a pass goes back to the OS (not glibc: its allocator decides)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 10)  # M_MMAP_THRESHOLD (fixed: no dynamic raise)
        libc.mallopt(-1, 64 << 10)  # M_TRIM_THRESHOLD
