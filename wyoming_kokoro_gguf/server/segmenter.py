"""Cuts text that arrives in pieces (a stream of deltas) into units worth synthesizing now.

Shared by the Wyoming handler and the HTTP API: the unit is what the scheduler hands the
engine and what the phrase cache keys on.
"""

from __future__ import annotations

import re

from wyoming_kokoro_gguf.synth.text import FIRST_PIECE_MIN_CHARS, sentence_goes_on

_SENTENCE_END = ".!?…。！？"
_CLAUSE_END = ",;:，；：、"
_CLOSERS = "\"'”’»)]}」』"
# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "no", "nr", "fig", "approx"}
    | {"dept", "est", "inc", "ltd", "co", "mt", "ave", "e.g", "i.e", "cf", "al"}
    | {"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
)
# Markdown marks that may close after a sentence or clause mark ("**Done.** Next").
_MARK_CLOSERS = "*_`~"
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_CLAUSE_MARK = re.compile(f"[{re.escape(_CLAUSE_END)}][{re.escape(_MARK_CLOSERS)}]*(?=\\s)")
# An unfinished link or inline pronunciation, "[word](/phonemes/)" (synth/markup.py), before a
# position: a unit never ends inside one, or its address or phonemes would be read as text.
_OPEN_MARKUP = re.compile(r"\[[^\[\]\n]{0,100}(?:\]\([^()\n]{0,300})?$")
# A fence line (``` or ~~~) opens or closes a code block, which is one unit.
_FENCE = re.compile(r"^[ \t]*(?:`{3,}(?![^\n]*`)|~{3,})", re.M)
# A line that is a numbered list item's marker so far ("1."), or a table row ("| a. | b |").
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*\d{1,9}$")
_TABLE_LINE = re.compile(r"(?:^|\n)[ \t]*\|[^\n]*$")
_DELIMITER_RUN = re.compile(r"\*+|_+|`+")


def _open_delimiters(unit: str) -> bool:
    """Whether emphasis (* _ ** __) or a code span (`) opened in ``unit`` is still open.

    CommonMark's flanking rules, simplified: a run followed by a non-space can open, one after a
    non-space can close; "5 * 3", "a_b" and "2*3" open nothing."""
    open_runs: list[str] = []
    for match in _DELIMITER_RUN.finditer(unit):
        run = match[0]
        before = unit[match.start() - 1] if match.start() else " "
        after = unit[match.end()] if match.end() < len(unit) else " "
        if open_runs and open_runs[-1][0] == "`":
            if run == open_runs[-1]:
                open_runs.pop()
            continue
        if run[0] == "`":
            open_runs.append(run)
            continue
        if before.isalnum() and after.isalnum():
            continue  # inside a word or number: "snake_case", "2*3"
        if not before.isspace() and run in open_runs:
            while open_runs.pop() != run:
                pass
        elif not after.isspace():
            open_runs.append(run)
    return bool(open_runs)


def _inside_markup(buf: str, end: int) -> bool:
    """Whether a cut at ``end`` would fall inside a link, a pronunciation, emphasis, a code span,
    a fenced code block or a table row."""
    unit = buf[:end]
    if "[" in unit and _OPEN_MARKUP.search(buf, max(0, end - 420), end) is not None:
        return True
    if _TABLE_LINE.search(unit) or len(_FENCE.findall(unit)) % 2:
        return True
    line = unit[unit.rfind("\n") + 1 :]
    return any(c in line for c in "*_`") and _open_delimiters(line)


class TextSegmenter:
    """Cuts text that arrives in arbitrary pieces into units worth synthesizing now.

    A unit ends at a sentence end (. ! ? … and CJK marks, with closing quotes) followed by
    white space and a word that does not start in lower case, or at a line break.  A period
    after a known abbreviation or a single initial does not end a sentence, and "3.5" never
    splits because a split needs white space after the mark, which only the next piece of text
    can show.  Once ``first_clause_chars`` wait without a sentence end, the first unit ends at
    its first clause mark (, ; :) after at least FIRST_PIECE_MIN_CHARS: the listener waits for
    the whole first unit, and a pass takes time in proportion to its audio (the engine cuts its
    own first piece the same way, synth/text.py).  A short sentence stays whole: a clause
    spoken alone loses the sentence's intonation, and with it words ("Turn on the kitchen
    lights," alone was heard "Tau Nong Keijun Lights").
    Later units end at the last clause mark once ``clause_chars`` wait without a sentence end,
    and at a word boundary after ``max_chars`` when there is no punctuation at all.
    """

    def __init__(
        self,
        first_clause_chars: int = 3 * FIRST_PIECE_MIN_CHARS,
        clause_chars: int = 150,
        max_chars: int = 300,
    ) -> None:
        self._buf = ""
        self._scan_from = 0
        self._emitted = 0
        self.first_clause_chars = first_clause_chars
        self.clause_chars = clause_chars
        self.max_chars = max_chars

    def feed(self, text: str) -> list[str]:
        """Add a piece of text; return the units it completed."""
        self._buf += text
        return self._drain(final=False)

    def finish(self) -> list[str]:
        """The end of the text: return every remaining unit."""
        units = self._drain(final=True)
        rest = self._buf.strip()
        self._buf = ""
        self._scan_from = 0
        if rest:
            units.append(rest)
        return [u for u in units if u]

    def _take(self, end: int) -> str:
        unit = self._buf[:end].strip()
        self._buf = self._buf[end:]
        self._scan_from = 0
        if unit:
            self._emitted += 1
        return unit

    def _drain(self, final: bool) -> list[str]:
        units: list[str] = []
        while True:
            cut = self._sentence_cut(final)
            if cut is None:
                cut = self._clause_cut()
            if cut is None:
                break
            unit = self._take(cut)
            if unit:
                units.append(unit)
        return units

    def _sentence_cut(self, final: bool) -> int | None:
        buf = self._buf
        n = len(buf)
        i = self._scan_from
        while i < n:
            ch = buf[i]
            if ch == "\n" and buf[:i].strip() and len(_FENCE.findall(buf, 0, i)) % 2 == 0:
                return i + 1
            if ch in _SENTENCE_END:
                j = i + 1
                while j < n and (buf[j] in _SENTENCE_END or buf[j] in _CLOSERS + _MARK_CLOSERS):
                    j += 1
                if j >= n:
                    if final:
                        return n
                    self._scan_from = i  # wait for the next piece to see what follows
                    return None
                if ch in "。！？":
                    return j
                if buf[j].isspace() and not self._is_abbreviation(buf, i, ch):
                    k = j
                    while k < n and buf[k].isspace():
                        k += 1
                    if k >= n and not final:
                        self._scan_from = i  # is the next word lower case ("5 p.m. today")?
                        return None
                    if not sentence_goes_on(buf[j:]) and not _inside_markup(buf, j):
                        return j
                i = j
                continue
            i += 1
        self._scan_from = n
        return None

    @staticmethod
    def _is_abbreviation(buf: str, i: int, ch: str) -> bool:
        if ch != ".":
            return False
        if _LIST_NUMBER.search(buf, 0, i):
            return True  # a numbered list item's marker: "1. Open Settings."
        m = _WORD_BEFORE.search(buf[:i])
        if not m:
            return False
        word = m.group(1).lower()
        if len(word) == 1 and word.isalpha() and m.group(1).isupper():
            return True  # an initial: "J. R. R. Tolkien"
        return word in _ABBREVIATIONS

    def _clause_cut(self) -> int | None:
        buf = self._buf
        limit = self.first_clause_chars if self._emitted == 0 else self.clause_chars
        if len(buf.strip()) < limit:
            return None
        best = None
        shortest = FIRST_PIECE_MIN_CHARS if self._emitted == 0 else min(limit, 40)
        for m in _CLAUSE_MARK.finditer(buf):
            if len(buf[: m.end()].strip()) >= shortest and not _inside_markup(buf, m.end()):
                best = m.end()
                if self._emitted == 0:
                    break  # the first unit: its first clause, so the first audio comes soon
        if best is not None:
            return best
        if len(buf) >= self.max_chars and len(_FENCE.findall(buf)) % 2 == 0:
            space = buf.rfind(" ", 0, self.max_chars)
            if space > 0:
                return space
            # No space at all (a 10,000-character "word"): cut it anyway, so one unit stays one
            # engine pass and a client's next request or another client's turn is not held back.
            return self.max_chars
        return None
