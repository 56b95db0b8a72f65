"""Grapheme-to-phoneme front ends, one per language, behind one interface (base.FrontEnd).

Japanese and Mandarin have their own (japanese.py, mandarin.py: optional extras ``ja`` and
``zh``); every other language is read by espeak-ng (espeak.py).  ``dedicated`` answers which
languages leave espeak-ng, so the espeak path stays as it is for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from wyoming_kokoro_gguf.synth.g2p.base import FrontEnd, G2PError, MissingExtra
from wyoming_kokoro_gguf.synth.g2p.japanese import JapaneseG2P
from wyoming_kokoro_gguf.synth.g2p.mandarin import MandarinG2P

__all__ = ["FrontEnd", "G2PError", "MissingExtra", "dedicated", "front_end", "has_front_end"]

# espeak-ng language tags (as the voices carry them) -> front end name
_LANGUAGES = {"ja": "ja", "cmn": "zh", "zh": "zh", "cmn-latn-pinyin": "zh"}
_cache: dict[str, FrontEnd] = {}
_lock = threading.Lock()


def has_front_end(language: str) -> bool:
    """Whether ``language`` is read by a front end of its own instead of espeak-ng."""
    return language.lower() in _LANGUAGES


def front_end(language: str, english: Callable[[str], str] | None = None) -> FrontEnd:
    """The (shared) front end for ``language``; raises MissingExtra without its packages.

    ``english`` reads Latin-script words inside Mandarin text (espeak-ng English).
    """
    name = _LANGUAGES[language.lower()]
    with _lock:
        found = _cache.get(name)
        if found is None:
            found = JapaneseG2P() if name == "ja" else MandarinG2P(english)
            _cache[name] = found
    return found


def dedicated(language: str, english: Callable[[str], str] | None = None) -> FrontEnd | None:
    """The front end of ``language``, or None when espeak-ng reads it."""
    return front_end(language, english) if has_front_end(language) else None
