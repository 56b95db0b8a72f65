"""Text -> speakable words, one piece at a time, before phonemization.

Why: espeak-ng reads "2 min" as "two men", "15 km/h" letter by letter and "2026-12-02" as digits
and dashes, and Kokoro says what espeak wrote.  Numbers, times, dates, units, currencies,
abbreviations and symbols are written out here as the words a listener expects, in the piece's
language (the espeak-ng language it is phonemized with).

Numbers are spelled by unicode-rbnf (CLDR rules for every Kokoro language); Japanese by num2words
in kana, because espeak-ng reads kana but not kanji numerals (docs/TEXT.md compares the two).

Layout: ``core.py`` holds the ``Lang`` record, the registry ``LANGS`` and number spelling;
``stages.py`` the stages every language goes through (``STAGES``, each a function
``(text, language) -> text``); one module per language (``en.py``, ``fr.py``...) fills a ``Lang``
with its words and rules and registers it.  A new language is a new module named in
``LANGUAGES`` below.
"""

from __future__ import annotations

from importlib import import_module

from wyoming_kokoro_gguf.synth.normalize.core import (
    LANGS,
    MAX_CARDINAL_DIGITS,
    Lang,
    Stage,
    decimal,
    digits,
    is_one,
    lang_key,
    number_words,
    parse_number,
    register,
    spell,
    table,
)
from wyoming_kokoro_gguf.synth.normalize.stages import (
    NUM,
    STAGES,
    date_words,
    speakable,
    tidy,
    time_words,
)

# The languages with their own words, by module name (each registers itself when imported).
LANGUAGES = ("en", "es", "fr", "it", "pt", "hi", "ja", "zh")
for _name in LANGUAGES:
    import_module(f"{__name__}.{_name}")

__all__ = [
    "LANGS",
    "LANGUAGES",
    "MAX_CARDINAL_DIGITS",
    "NUM",
    "STAGES",
    "Lang",
    "Stage",
    "date_words",
    "decimal",
    "digits",
    "is_one",
    "lang_key",
    "number_words",
    "parse_number",
    "register",
    "speakable",
    "spell",
    "table",
    "tidy",
    "time_words",
]
