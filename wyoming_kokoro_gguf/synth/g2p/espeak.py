"""espeak-ng behind the front-end interface: every language without a front end of its own.

Why: Kokoro's English fallback and its Spanish, French, Italian, Portuguese and Hindi voices
were trained on espeak-ng phonemes rewritten in misaki's symbols; synth/phonemes.py does that
rewriting, and this adapter only gives it the common ``phonemize(text, language)`` shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from wyoming_kokoro_gguf.synth.g2p import G2PError, has_front_end
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer
from wyoming_kokoro_gguf.weights.layout import KOKORO_VOCAB


class EspeakG2P:
    """espeak-ng phonemes in Kokoro's symbols for any espeak-ng language tag."""

    def __init__(self, vocab: Mapping[str, int] | None = None) -> None:
        if vocab is None:
            vocab = {symbol: i for i, symbol in enumerate(KOKORO_VOCAB) if symbol}
        self._phonemizer = Phonemizer(vocab)

    def phonemize(self, text: str, language: str) -> str:
        """espeak-ng's reading of ``text`` as ``language`` (e.g. "en-us", "fr-fr")."""
        if has_front_end(language):
            raise G2PError(f"{language!r} has a front end of its own; espeak-ng is not used")
        return self._phonemizer.phonemize(text, language)
