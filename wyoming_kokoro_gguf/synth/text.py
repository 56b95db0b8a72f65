"""Text clean-up and splitting into the pieces the engine synthesizes one at a time.

Why pieces: a satellite gives up if no audio arrives within 5 s, and one Kokoro pass takes at
most 510 phonemes.  Text is cut at sentence ends, long sentences at clause punctuation, so every
piece sounds natural on its own; nothing is ever dropped (a piece that still does not fit one
pass is cut again on phonemes, see phonemes.split_phonemes).  The first piece may be a short
clause so that the first audio comes early.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Characters that end a sentence (the one list: the engine reads it too, for the pause after a
# piece).  Kept with the piece they end, so the model still sees the punctuation that shapes its
# intonation.
SENTENCE_END = ".!?…。！？"

_QUOTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u00ab": "\u201c",
    "\u00bb": "\u201d",
    "\u201e": "\u201c",
}

# a sentence ends at terminal punctuation (plus closing quotes/brackets) followed by a space
_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+")
_CLAUSE_RE = re.compile(r"(?<=[,;:，、；：])\s+|(?<=[—–])\s*|\s+(?=[—–])")

# Pieces longer than this are split at clauses; about 12 s of speech, well inside one pass.
MAX_PIECE_CHARS = 220
# The first piece of a long text is split at its first clause boundary when that gives at
# least this many characters, so the first audio is short and comes early.
FIRST_PIECE_MIN_CHARS = 20


def normalize(text: str) -> str:
    """Unicode-normalize, unify quotes, drop control characters and collapse whitespace."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(_QUOTES.get(ch, ch) for ch in text)
    text = "".join(
        ch if unicodedata.category(ch)[0] != "C" else " " for ch in text.replace("\t", " ")
    )
    return " ".join(text.split())


# Titles that end with a period but do not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "sr",
        "jr",
        "vs",
        "mt",
        "fig",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "e.g",
        "i.e",
    ]
)


# Words that end with a period before a number ("Jan. 9", "No. 5", "Tue. 4"), not a sentence.
_BEFORE_NUMBER = frozenset(
    ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
    + ("mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "no", "nr")
)


def sentence_goes_on(rest: str) -> bool:
    """Whether the text after a period continues its sentence: a lower-case word ("5 p.m.
    today"), or a dash on the same line ("9 a.m. - 5 p.m."; on a line of its own it is a list
    item).  Both splitters ask it: this module's and the streaming one (server/segmenter.py)."""
    following = rest.lstrip()
    if not following:
        return False
    same_line = "\n" not in rest[: len(rest) - len(following)]
    return following[0].islower() or (following[0] in "-–—" and same_line)


def _not_an_end(text: str, match: re.Match[str]) -> bool:
    """A period after an abbreviation, or before what ``sentence_goes_on``, does not end a
    sentence."""
    if not match.group(0).startswith(".") or len(match.group(0).rstrip("\"'”’)]")) > 1:
        return False
    word = (
        text[: match.start()].rsplit(None, 1)[-1].lower() if text[: match.start()].strip() else ""
    )
    if word in _ABBREVIATIONS:
        return True
    following = text[match.end() :].lstrip()
    if word in _BEFORE_NUMBER and following[:1].isdigit():
        return True  # "Jan. 9", "No. 5": the normalizer reads them together
    return sentence_goes_on(text[match.end() :])


def sentences(text: str) -> list[str]:
    """Split normalized text into sentences, punctuation kept."""
    out, start = [], 0
    for match in _SENTENCE_END_RE.finditer(text):
        if _not_an_end(text, match):
            continue
        out.append(text[start : match.end()])
        start = match.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def clauses(sentence: str) -> list[str]:
    """Split one sentence at clause punctuation, punctuation kept with the clause it ends."""
    return [c.strip() for c in _CLAUSE_RE.split(sentence) if c and c.strip()]


def _pack(parts: list[str], limit: int) -> list[str]:
    """Join consecutive clauses back together while they fit ``limit`` characters."""
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + 1 + len(part) <= limit:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS, early_first: bool = True) -> list[str]:
    """Normalize and split text into synthesis pieces; empty or blank text gives []."""
    return list(iter_pieces(text, max_chars=max_chars, early_first=early_first))


_LIST_ITEM = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s+")


def blocks(text: str) -> list[str]:
    """Cut text at line breaks that end a thought: blank lines, list items, and lines that end
    without punctuation before a capitalized line (titles, lists).  Hard-wrapped prose stays
    joined."""
    out: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            if current:
                out.append(" ".join(current))
                current = []
            continue
        if current and (
            _LIST_ITEM.match(line)
            or (
                current[-1][-1:] not in ",;:-"
                and stripped[:1].isupper()
                and current[-1][-1:] not in SENTENCE_END
            )
        ):
            out.append(" ".join(current))
            current = []
        current.append(_LIST_ITEM.sub("", line).strip())
    if current:
        out.append(" ".join(current))
    return out


def iter_pieces(
    text: str, max_chars: int = MAX_PIECE_CHARS, early_first: bool = True
) -> Iterator[str]:
    """Yield pieces lazily: sentences, long ones cut at clauses, the first piece kept short."""
    first = True
    for sentence in (s for block in blocks(text) for s in sentences(normalize(block))):
        parts = clauses(sentence)
        if first and early_first and len(sentence) > 3 * FIRST_PIECE_MIN_CHARS and len(parts) > 1:
            # first audio early: the first clause(s) alone, once they are long enough
            head, rest = parts[0], parts[1:]
            while len(rest) > 1 and len(head) < FIRST_PIECE_MIN_CHARS:
                head = f"{head} {rest.pop(0)}"
            yield head
            parts = rest
        first = False
        if len(parts) == 1 or sum(len(p) + 1 for p in parts) <= max_chars + 1:
            yield " ".join(parts)
        else:
            yield from _pack(parts, max_chars)
