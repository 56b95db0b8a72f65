"""Phonemes from the espeak-ng wheel, mapped to Kokoro's vocabulary; passes of <= 510."""

from __future__ import annotations

import threading

import pytest

from wyoming_kokoro_gguf.synth.phonemes import (
    MAX_PHONEMES,
    Phonemizer,
    keep_known,
    language_for_voice,
    split_phonemes,
    to_kokoro,
)
from wyoming_kokoro_gguf.weights import layout


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    """The Kokoro vocabulary as the GGUF files carry it (tokenizer.ggml.tokens)."""
    return {t: i for i, t in enumerate(layout.KOKORO_VOCAB) if t}


@pytest.fixture(scope="module")
def phonemizer(vocab: dict[str, int]) -> Phonemizer:
    return Phonemizer(vocab)


def test_language_from_voice_prefix() -> None:
    assert language_for_voice("af_heart") == "en-us"
    assert language_for_voice("bm_george") == "en-gb"
    assert language_for_voice("jf_alpha") == "ja"
    assert language_for_voice("zf_xiaobei") == "cmn"
    assert language_for_voice("pf_dora") == "pt-br"
    assert language_for_voice("xx_unknown") == "en-us"
    assert language_for_voice("af_heart", "en-gb") == "en-gb"


def test_misaki_conventions() -> None:
    # tied diphthongs / affricates become single symbols; American English drops length marks
    assert to_kokoro("həlˈo^ʊ t^ʃˈɜːt^ʃ", "en-us") == "həlˈO ʧˈɜɹʧ"
    assert to_kokoro("ɡˌə^ʊ hˈə^ʊm", "en-gb") == "ɡˌQ hˈQm"
    assert to_kokoro("bˈʌɾɚ", "en-us") == "bˈʌɾəɹ"
    # other languages keep their symbols, only ties are merged
    assert to_kokoro("t^ʃˈao", "it") == "ʧˈao"


def test_unknown_symbols_dropped_but_base_letters_kept(vocab: dict[str, int]) -> None:
    assert keep_known("kˈä 2", vocab) == "kˈa"
    assert keep_known("bɔ̃", vocab) == "bɔ̃"  # the combining tilde is in the vocabulary


def test_english_sentence(phonemizer: Phonemizer) -> None:
    ps = phonemizer.phonemize("Hello there, my friend!", "en-us")
    assert ps == "həlˈO ðˈɛɹ, mI fɹˈɛnd!"
    ids = phonemizer.ids(ps)
    assert len(ids) == len(ps) and all(isinstance(i, int) and i > 0 for i in ids)


@pytest.mark.parametrize(
    "language,text",
    [
        ("en-gb", "Good morning."),
        ("es", "Hola, ¿qué tal?"),
        ("fr-fr", "Bonjour."),
        ("it", "Ciao."),
        ("pt-br", "Olá."),
        ("hi", "नमस्ते"),
        ("ja", "こんにちは"),
        ("cmn", "你好"),
    ],
)
def test_every_voice_language_speaks(phonemizer: Phonemizer, language: str, text: str) -> None:
    ps = phonemizer.phonemize(text, language)
    assert ps and all(ch in phonemizer.vocab for ch in ps)


def test_nothing_speakable(phonemizer: Phonemizer) -> None:
    assert phonemizer.phonemize("", "en-us") == ""
    assert phonemizer.phonemize("   ", "en-us") == ""
    assert not any(ch.isalpha() for ch in phonemizer.phonemize("... !!! ???", "en-us"))


def test_split_prefers_punctuation_and_never_drops() -> None:
    text = ("ðɪs ɪz ɐ lˈɔŋ sˈɛntəns, wɪð kˈɑməz. " * 40).strip()
    passes = split_phonemes(text)
    assert all(0 < len(p) <= MAX_PHONEMES for p in passes)
    assert all(p.endswith(".") for p in passes[:-1])
    assert "".join(passes).replace(" ", "") == text.replace(" ", "")


def test_split_without_any_break_still_bounded() -> None:
    text = "a" * 1200
    passes = split_phonemes(text)
    assert [len(p) for p in passes] == [510, 510, 180]


def test_thread_safe(phonemizer: Phonemizer) -> None:
    expected = phonemizer.phonemize("The weather is lovely today.", "en-us")
    results: list[str] = []

    def work() -> None:
        for _ in range(5):
            results.append(phonemizer.phonemize("The weather is lovely today.", "en-us"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 20


def test_text_without_the_voice_script_is_read_as_english() -> None:
    from wyoming_kokoro_gguf.synth.phonemes import language_for_text

    assert language_for_text("Turn on the lights.", "ja") == "en-us"
    assert language_for_text("こんにちは", "ja") == "ja"
    assert language_for_text("東京 is big", "ja") == "ja"
    assert language_for_text("hello", "cmn") == "en-us"
    assert language_for_text("नमस्ते", "hi") == "hi"
    assert language_for_text("Hola, ¿qué tal?", "es") == "es"  # Latin-script languages stay
    assert language_for_text("...", "ja") == "ja"


def test_decimal_point_no_longer_ends_the_phonemes(phonemizer: Phonemizer) -> None:
    """phonemizer's own punctuation handling cut at the first '.', even a decimal point."""
    ps = phonemizer.phonemize("The kitchen is at 19.5 °C and the humidity is 52%.", "en-us")
    assert "hjumˈɪdᵻɾi" in ps and ps.endswith(".")


def test_pronoun_i_is_stressed(phonemizer: Phonemizer) -> None:
    assert phonemizer.phonemize("I think so.", "en-us").startswith("ˈI ")
