"""What every language shares: the ``Lang`` record, the registry of languages and numbers in words.

Why: the stages (``stages.py``) ask a language for its words and rules here, never by name, so
a language is one module that fills a ``Lang`` and calls ``register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

Stage = Callable[[str, str], str]
# (hour, minute, "a"/"p" of a 12-hour time or None, written with a leading zero, language)
ClockWords = Callable[[int, int, "str | None", bool, str], str]
# (year or None, month, day, language)
DateWords = Callable[["int | None", int, int, str], str]

# Longer integers are read digit by digit (ids, serial numbers; the spellers stop near 10^17).
MAX_CARDINAL_DIGITS = 15


@dataclass(frozen=True)
class Lang:
    """The words one language needs; templates take {n} (a number in words) or {a}/{b}.

    ``says``: words the shared stages put in phrases ("dot", "at", "per", "less", "more",
    "and", "version", "plus", "port", "seconds", "first", "of"); a missing one is not said.
    ``rules``: the language's own stages, run at the named places of ``STAGES``
    ("calendar", "compass", "fractions", "words", "times", "slashes").
    """

    point: str
    minus: str
    percent: str
    range: str
    months: str  # twelve names, space separated
    weekdays: str  # Monday first
    units: dict[str, str | tuple[str, str]] = field(default_factory=dict)
    money: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)  # abbreviations and symbols
    sep: str = " "  # between words (none in Japanese and Chinese)
    says: dict[str, str] = field(default_factory=dict)
    rules: dict[str, Stage] = field(default_factory=dict)
    clock: ClockWords | None = None  # a clock time in words (None: hour and minutes)
    h_clock: bool = False  # "7h30", "14h" are clock times (French, Brazilian Portuguese)
    date: DateWords | None = None  # a date in words (None: day, month, year)
    ordinal: tuple[str, str] | None = None  # pattern of a written ordinal, feminine endings
    counters: dict[str, Callable[[int], str]] = field(default_factory=dict)  # unit -> words
    per_nouns: dict[str, str] = field(default_factory=dict)  # "/month", "/mo" -> "month"
    decimal_point: bool = False  # "1,234.5" (not "1.234,5")
    year_form: bool = False  # years have their own spelling ("nineteen ninety")
    speller: Callable[[int, str], str] | None = None  # (n >= 0, purpose) -> words, not CLDR
    respell: Callable[[str, str, str], str] | None = None  # (words, language, purpose)


LANGS: dict[str, Lang] = {}


def register(key: str, lang: Lang) -> Lang:
    """Adds a language under its table key ("en", "fr"...): the stages then read it."""
    LANGS[key] = lang
    return lang


def unit_table(spec: str) -> dict[str, str | tuple[str, str]]:
    """Compact unit tables: "W=vatio|vatios; Hz=hercios" -> {"W": ("{n} vatio", "{n} vatios"),
    "Hz": "{n} hercios"}; a word with its own "{n}" ("{n}瓦") or "{f}" (the number in the
    feminine: "{f} hora") is kept as written."""
    out: dict[str, str | tuple[str, str]] = {}
    for item in spec.split(";"):
        symbol, _, words = item.strip().partition("=")
        forms = [w if "{" in w else "{n} " + w for w in words.split("|")]
        out[symbol] = forms[0] if len(forms) == 1 else (forms[0], forms[1])
    return out


def lang_key(language: str) -> str:
    """espeak-ng language ("en-gb", "fr-fr", "pt-br", "cmn") -> table key ("en", "fr", ...)."""
    base = language.lower().split("-")[0]
    return {"cmn": "zh", "yue": "zh"}.get(base, base)


def table(language: str) -> Lang:
    """The language's word tables (English for a language without one)."""
    return LANGS.get(lang_key(language), LANGS["en"])


def own(language: str) -> Lang | None:
    """The language's own tables, None for a language without any (no English fallback)."""
    return LANGS.get(lang_key(language))


def says(language: str, word: str, default: str = "") -> str:
    """A word of the language's ``says`` table; ``default`` for a language without one."""
    lang = own(language)
    return lang.says.get(word, default) if lang else default


def template(entry: str | tuple[str, str], one: bool) -> str:
    """A unit's template, singular or plural."""
    if isinstance(entry, str):
        return entry
    return entry[0] if one else entry[1]


def hour_24(h: int, half: str | None) -> int:
    """A 12-hour clock's hour on the 24-hour clock ("7 pm" -> 19)."""
    return h + 12 if half and half.lower() == "p" and h < 12 else h


# ---------------------------------------------------------------- number spelling


@lru_cache(maxsize=16)
def _rbnf(key: str):  # -> unicode_rbnf.RbnfEngine
    from unicode_rbnf import RbnfEngine

    return RbnfEngine.for_language(key)


def spell(n: int, language: str, purpose: str = "cardinal", feminine: bool = False) -> str:
    """An integer in words, in the language's own rules.

    ``purpose``: "cardinal" (the form before a noun: "un grado"), "numbering" (counting and
    digits: "uno"), "ordinal" or "year".
    """
    from unicode_rbnf import FormatPurpose

    key = lang_key(language)
    key = key if key in LANGS else "en"
    lang = LANGS[key]
    if len(str(abs(n))) > MAX_CARDINAL_DIGITS:
        return digits(str(abs(n)), language)
    if lang.speller is not None:
        word = lang.speller(abs(n), purpose)
        return lang.minus + word if n < 0 else word
    kinds = {"cardinal": FormatPurpose.CARDINAL, "ordinal": FormatPurpose.ORDINAL}
    kinds["year"] = FormatPurpose.YEAR if lang.year_form else FormatPurpose.CARDINAL
    kinds["numbering"] = FormatPurpose.CARDINAL
    result = _rbnf(key).format_number(n, kinds[purpose])
    gender = "feminine" if feminine else "masculine"
    text = result.text_by_ruleset.get(f"spellout-{purpose}-{gender}", result.text)
    if lang.respell is not None:
        text = lang.respell(text, language, purpose)
    return text.replace(",", "")


def digits(text: str, language: str) -> str:
    """Digits read one by one ("0612" -> "zero six one two")."""
    return table(language).sep.join(
        spell(int(d), language, "numbering") for d in text if d.isdigit()
    )


def decimal(
    whole: str,
    fraction: str,
    language: str,
    negative: bool = False,
    purpose: str = "numbering",
    feminine: bool = False,
) -> str:
    """ "19", "5" -> "nineteen point five"; the fraction is read digit by digit."""
    lang = table(language)
    if len(whole) > MAX_CARDINAL_DIGITS:  # before int(): Python refuses over 4300 digits
        words = digits(whole, language)
    else:
        words = spell(int(whole or "0"), language, "numbering" if fraction else purpose, feminine)
    if fraction:
        words = lang.sep.join([words, lang.point, digits(fraction, language)])
    return lang.sep.join([lang.minus, words]) if negative else words


def parse_number(text: str, language: str) -> tuple[bool, str, str]:
    """A written number -> (negative, whole digits, fraction digits), in the locale's
    separators: "1,234.5" (English), "1.234,5" / "1 234,5" (most others).  "19.5" is a decimal
    everywhere (Home Assistant's states use a point in every language)."""
    negative = text[:1] in "-−"
    body = text.lstrip("-−+").replace("\u202f", " ").replace("\xa0", " ")
    lang = own(language)
    if lang is not None and lang.decimal_point:
        if "." not in body and not re.fullmatch(r"\d{1,3}(?:,\d{3})+", body):
            body = body.replace(",", ".")  # "3,50 €": a comma that groups nothing
        whole, _, fraction = body.replace(",", "").replace(" ", "").partition(".")
    else:
        if re.fullmatch(r"\d{1,3}(?:[. ]\d{3})+(?:,\d+)?", body):
            body = body.replace(".", "").replace(" ", "")
        whole, _, fraction = body.replace(",", ".").partition(".")
    return negative, whole, fraction


def number_words(
    text: str, language: str, purpose: str = "numbering", feminine: bool = False
) -> str:
    """A written number in words; leading zeros and very long numbers digit by digit."""
    negative, whole, fraction = parse_number(text, language)
    if len(whole) > 1 and whole.startswith("0") and not fraction:
        return digits(whole, language)
    return decimal(whole, fraction, language, negative, purpose, feminine)


def is_one(text: str, language: str) -> bool:
    """Whether a written number takes the singular ("1 degree", "-1 degree"; not "1.5")."""
    _negative, whole, fraction = parse_number(text, language)
    return whole.lstrip("0") == "1" and not fraction.strip("0")
