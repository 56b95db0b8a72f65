"""Text to Kokoro phoneme ids with espeak-ng (from the espeakng-loader wheel, no system package).

Kokoro was trained on misaki's phoneme set, where espeak output is rewritten in a few regular
ways (learned from reading misaki's espeak fallback): tied diphthongs and affricates become one
symbol (``e^ɪ`` -> ``A``, ``a^ɪ`` -> ``I``, ``t^ʃ`` -> ``ʧ``...), and for English a handful of
symbols the model never saw are replaced by their nearest neighbours (``ɚ`` -> ``əɹ``, ``ɐ`` ->
``ə``...; American English also drops length marks).  Anything left that is not in the model's
vocabulary is dropped (after splitting off combining marks, so ``ä`` still gives ``a``).

espeak-ng keeps process-global state: every call goes through one lock.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Mapping

from wyoming_kokoro_gguf.synth import g2p

# voice-name prefix -> espeak-ng language (hexgrad/kokoro's pipeline languages)
PREFIX_LANGUAGES = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}
MAX_PHONEMES = 510  # one pass: 512 positions minus the two pad tokens
TIE = "^"

# Tied pairs espeak writes with TIE -> misaki's single symbols (all languages).
_TIED = {
    "a^ɪ": "I",
    "a^ʊ": "W",
    "d^z": "ʣ",
    "d^ʒ": "ʤ",
    "e^ɪ": "A",
    "o^ʊ": "O",
    "ə^ʊ": "Q",
    "s^s": "S",
    "t^s": "ʦ",
    "t^ʃ": "ʧ",
    "t^ɕ": "ʨ",
    "d^ʑ": "ʥ",
    "ɔ^ɪ": "Y",
}
# English only: symbols outside misaki's English set -> nearest ones.
_ENGLISH = {
    "ʔn̩": "tᵊn",
    "ʔn": "tᵊn",
    "ʔ": "t",
    "ə^l": "ᵊl",
    "ɚ": "əɹ",
    "ɐ": "ə",
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɬ": "l",
    "ʲ": "",
    "ɪ^ə": "iə",
}
_AMERICAN = {"ɜːɹ": "ɜɹ", "ɜː": "ɜɹ", "ː": ""}
_BRITISH = {"e^ə": "ɛː"}

# Punctuation Kokoro hears, split off here rather than by phonemizer: phonemizer's own
# punctuation handling cuts a line at the first "." it finds, even a decimal point, and returns
# the rest as a separate line (so "19.5 °C and ..." lost everything after "19").  A period or
# comma between two digits stays with the number.
_MARKS_RE = re.compile(r"((?:(?<![0-9])[.,]|[.,](?![0-9])|[;:!?¡¿—…\"«»“”()])+)")
_OPENING = "¡¿«“("

# Where a pass may end when a piece is too long, best first.
_BREAKS = (".!?…", ",;:—", " ")


# phonemizer warns on every call about language switches and word counts; keep it to errors
_QUIET = logging.getLogger(__name__ + ".espeak")
_QUIET.setLevel(logging.ERROR)


class PhonemizerError(RuntimeError):
    """espeak-ng is missing or cannot speak the requested language."""


def language_for_voice(voice: str, espeak: str | None = None) -> str:
    """espeak-ng language for a voice: the file's own tag if given, else from the name prefix."""
    if espeak:
        return espeak
    return PREFIX_LANGUAGES.get(voice[:1].lower(), "en-us")


# Languages whose own script espeak-ng needs; text without a single character of that script
# (e.g. English sent to a Japanese voice) would be spelled out letter by letter ("English
# letter...") -- such text is read as American English instead: Kokoro's voices all speak
# English phonemes, the Japanese ones intelligibly (tested with the PyPI voices).
_SCRIPTS = {
    "ja": ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xFF66, 0xFF9F)),
    "cmn": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "hi": ((0x0900, 0x097F),),
}
FALLBACK_LANGUAGE = "en-us"


def language_for_text(text: str, language: str) -> str:
    """The voice's language, or English when the text has none of that language's script."""
    ranges = _SCRIPTS.get(language)
    if ranges is None:
        return language
    for ch in text:
        code = ord(ch)
        if any(lo <= code <= hi for lo, hi in ranges):
            return language
    return FALLBACK_LANGUAGE if any(ch.isalpha() for ch in text) else language


def _replace_all(text: str, table: Mapping[str, str]) -> str:
    for old in sorted(table, key=len, reverse=True):
        text = text.replace(old, table[old])
    return text


def to_kokoro(phonemes: str, language: str) -> str:
    """Rewrite espeak IPA (with TIE marks) in misaki's conventions."""
    if language.startswith("en"):
        table = dict(_ENGLISH)
        table.update(_BRITISH if language == "en-gb" else _AMERICAN)
        phonemes = _replace_all(phonemes, table)
    phonemes = _replace_all(phonemes, _TIED)
    return phonemes.replace(TIE, "")


def keep_known(phonemes: str, vocab: Mapping[str, int]) -> str:
    """Drop symbols outside the vocabulary; decompose unknown letters first (ä -> a)."""
    out = []
    for ch in phonemes:
        if ch in vocab:
            out.append(ch)
            continue
        out.extend(c for c in unicodedata.normalize("NFD", ch) if c in vocab)
    return " ".join("".join(out).split())


def split_phonemes(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """Cut a phoneme string into passes of at most ``limit`` symbols, never dropping any.

    Cuts after sentence punctuation if possible, else after clause punctuation, else at a word
    boundary, else anywhere.
    """
    rest = phonemes.strip()
    out = []
    while len(rest) > limit:
        window = rest[:limit]
        cut = 0
        for marks in _BREAKS:
            cut = max(window.rfind(m) for m in marks) + 1
            if cut > limit // 4:
                break
        if cut <= 0:
            cut = limit
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        out.append(rest)
    return [p for p in out if p]


class Phonemizer:
    """espeak-ng phonemizer with one backend per language, mapped to a model's vocabulary."""

    _lock = threading.Lock()
    _configured = False

    def __init__(self, vocab: Mapping[str, int]) -> None:
        self.vocab = dict(vocab)
        self._backends: dict[str, object] = {}
        self._configure()

    @classmethod
    def _configure(cls) -> None:
        with cls._lock:
            if cls._configured:
                return
            try:
                import espeakng_loader
                from phonemizer.backend.espeak.wrapper import EspeakWrapper
            except ImportError as err:  # pragma: no cover - both are hard dependencies
                raise PhonemizerError(f"phonemizer/espeakng-loader not installed: {err}") from err
            EspeakWrapper.set_library(espeakng_loader.get_library_path())
            EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
            cls._configured = True

    def _backend(self, language: str):
        backend = self._backends.get(language)
        if backend is None:
            from phonemizer.backend import EspeakBackend

            try:
                backend = EspeakBackend(
                    language,
                    preserve_punctuation=False,
                    with_stress=True,
                    tie=TIE,
                    language_switch="remove-flags",
                    logger=_QUIET,
                )
            except RuntimeError as err:
                raise PhonemizerError(f"espeak-ng cannot speak {language!r}: {err}") from err
            self._backends[language] = backend
        return backend

    def phonemize(self, text: str, language: str) -> str:
        """Text -> phonemes in the model's vocabulary ('' when nothing is speakable).

        Punctuation is split off here, each run of words goes to espeak-ng whole, and every
        line espeak-ng returns is kept: no word is ever left out.
        """
        if not text.strip():
            return ""
        front = self._front_end(language)
        if front is not None:  # Japanese and Mandarin have front ends of their own (synth/g2p/)
            return keep_known(front.phonemize(text, language), self.vocab)
        out: list[str] = []
        for n, part in enumerate(_MARKS_RE.split(text)):
            if n % 2:  # punctuation: closing marks stick to the word before, opening ones after
                marks = "".join(part.split())
                glue = not out or marks[:1] not in _OPENING
                out.append(marks if glue else " " + marks)
            elif part.strip():
                words = self._espeak(part, language)
                if words:
                    out.append(words if not out or out[-1][-1:] in _OPENING else " " + words)
        return keep_known("".join(out), self.vocab)

    def _front_end(self, language: str) -> g2p.FrontEnd | None:
        """The language's own front end, or None for espeak-ng; a missing extra is named."""
        try:
            return g2p.dedicated(language, lambda words: self.phonemize(words, FALLBACK_LANGUAGE))
        except g2p.G2PError as err:
            raise PhonemizerError(str(err)) from err

    def _espeak(self, words: str, language: str) -> str:
        """One run of words (no punctuation) -> model phonemes."""
        with self._lock:
            lines = self._backend(language).phonemize([words], strip=True)
        phonemes = to_kokoro(" ".join(lines), language)
        if language.startswith("en"):
            # espeak leaves the pronoun "I" unstressed, and Kokoro then often does not voice it
            # at the start of a sentence; misaki's lexicon, which Kokoro learned, stresses it
            phonemes = " ".join("ˈI" if w == "I" else w for w in phonemes.split())
        return phonemes

    def ids(self, phonemes: str) -> list[int]:
        """Phonemes -> token ids (without the pad tokens the engine adds around them)."""
        return [self.vocab[p] for p in phonemes if p in self.vocab]
