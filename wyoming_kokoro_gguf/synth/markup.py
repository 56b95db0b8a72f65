"""Inline markup in the text the engine speaks.

Why: Kokoro's own tools take ``[Kokoro](/kˈOkəɹO/)`` (these phonemes for this word) and
``[word](respelling)``; users and the lexicon (synth/lexicon.py) give pronunciations that way.
SSML (synth/ssml.py) compiles to the same text plus directives in double braces, which the
engine reads span by span:

    {{pause 0.5}}          silence, in seconds (at most MAX_PAUSE_S)
    {{voice af_bella}}     the voice of the text that follows
    {{rate 1.2}}           speed factor of the text that follows
    {{lang fr-fr}}         espeak-ng language of the text that follows
    {{say KIND[:FORMAT] CONTENT}}   say-as: characters, cardinal, ordinal, digits, date,
                                    time, telephone (written out in the span's language)

Phonemes are protected from the text clean-up and normalizer by placeholder words, so they reach
the model unchanged (symbols outside its vocabulary are dropped by the phonemizer).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

from wyoming_kokoro_gguf.synth import normalize as norm

_LOG = logging.getLogger(__name__)

MAX_PAUSE_S = 10.0
_DIRECTIVE_RE = re.compile(r"\{\{(pause|voice|rate|lang) ([^{}\s]{1,80})\}\}")
_SAY_RE = re.compile(
    r"\{\{say (characters|cardinal|ordinal|digits|date|time|telephone)(?::([a-z]{1,4}))? "
    r"([^{}]{1,200})\}\}"
)
# "[word](/phonemes/)" or "[word](respelling)".  Phonemes in plain lower-case ASCII, with no
# stress mark, are a link to a page ("[Settings](/config/)"), read as its text.
_INLINE_RE = re.compile(
    r"\[([^\[\]\n]{1,100})\]\((?:/(?![a-z0-9_.\-]+/\))([^()/\n]{1,300})/|([\w'’\- ]{1,100}))\)"
)
_TOKEN_RE = re.compile(r"qqkokoro(\d+)qq")


@dataclass(frozen=True)
class Span:
    """A run of text with its settings, or a pause (``text`` empty, ``pause`` seconds)."""

    text: str = ""
    pause: float = 0.0
    voice: str | None = None
    rate: float = 1.0
    language: str | None = None


def _number(value: str, default: float) -> float:
    try:
        number = float(value)
    except ValueError:
        return default
    return number if number == number and number >= 0 else default  # NaN and negatives


def spans(text: str) -> list[Span]:
    """Text with directives -> its spans in order (no directive: one span, the text)."""
    if "{{" not in text:
        return [Span(text)]
    out: list[Span] = []
    state = Span()
    position = 0
    for match in _DIRECTIVE_RE.finditer(text):
        if text[position : match.start()].strip():
            out.append(replace(state, text=text[position : match.start()]))
        position = match.end()
        name, value = match[1], match[2]
        if name == "pause":
            seconds = min(MAX_PAUSE_S, _number(value, 0.0))
            if seconds > 0:
                out.append(Span(pause=seconds))
        elif name == "voice":
            state = replace(state, voice=value)
        elif name == "rate":
            state = replace(state, rate=_number(value, 1.0) or 1.0)
        else:
            state = replace(state, language=value.lower())
    if text[position:].strip():
        out.append(replace(state, text=text[position:]))
    return out


def _characters(content: str, language: str) -> str:
    words = []
    for ch in content:
        if ch.isdigit():
            words.append(norm.digits(ch, language))
        elif ch.isalnum():
            words.append(ch.upper())
    return ", ".join(words) if len(words) > 1 else "".join(words)


def _date(content: str, fmt: str, language: str) -> str:
    numbers = [int(n) for n in re.findall(r"\d+", content)]
    fields = dict(zip(fmt or "ymd", numbers, strict=False))
    month, day = fields.get("m"), fields.get("d")
    if month is None or day is None or not 1 <= month <= 12 or not 1 <= day <= 31:
        return content
    return norm.date_words(fields.get("y"), month, day, language)


def say_as(kind: str, fmt: str, content: str, language: str) -> str:
    """SSML say-as content written out as words in ``language``; unreadable content as is."""
    content = content.strip()
    if kind == "characters":
        return _characters(content, language)
    if kind == "digits" or kind == "telephone":
        groups = re.findall(r"\d+", content)
        return ", ".join(norm.digits(g, language) for g in groups) or content
    if kind in ("cardinal", "ordinal"):
        digits = re.sub(r"[^\d-]", "", content)
        if not re.fullmatch(r"-?\d{1,15}", digits):
            return content
        return norm.spell(int(digits), language, kind)
    if kind == "date":
        return _date(content, fmt, language)
    match = re.fullmatch(r"(\d{1,2})[:.](\d{2})(?::\d{2})?\s*([AaPp])?\.?[Mm]?\.?", content)
    if kind == "time" and match and int(match[1]) < 25 and int(match[2]) < 60:
        half = match[3].lower() if match[3] else None
        return norm.time_words(int(match[1]), int(match[2]), half, language)
    return content


def expand_say_as(text: str, language: str) -> str:
    """Every ``{{say ...}}`` directive of a span replaced by its words."""
    if "{{say " not in text:
        return text
    return _SAY_RE.sub(lambda m: say_as(m[1], m[2] or "", m[3], language), text)


def protect(text: str) -> tuple[str, list[str]]:
    """Inline markup -> placeholder words (phonemes) or the respelling; the phonemes in order.

    The placeholders survive text clean-up and cutting into pieces; ``parts`` restores them.
    """
    phonemes: list[str] = []

    def one(match: re.Match[str]) -> str:
        if match[2] is None:
            return match[3]
        phonemes.append(" ".join(match[2].split()))
        return f" qqkokoro{len(phonemes) - 1}qq "

    return _INLINE_RE.sub(one, text), phonemes


def parts(piece: str, phonemes: list[str]) -> list[tuple[bool, str]]:
    """A piece -> (is_phonemes, text) parts in order, placeholders replaced by their phonemes."""
    out: list[tuple[bool, str]] = []
    position = 0
    for match in _TOKEN_RE.finditer(piece):
        if piece[position : match.start()].strip():
            out.append((False, piece[position : match.start()]))
        index = int(match[1])
        if index < len(phonemes) and phonemes[index]:
            out.append((True, phonemes[index]))
        position = match.end()
    if piece[position:].strip():
        out.append((False, piece[position:]))
    return out
