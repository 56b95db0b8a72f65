"""Markdown as a listener hears it: a language model's reply -> the plain text to speak.

Why: conversation agents (OpenAI, Ollama, Gemini) answer in Markdown, and espeak-ng reads its
marks aloud ("asterisk", "hash", backticks, whole URLs).  The text is parsed by markdown-it-py
(CommonMark, the rules the agents' own chat views render with) and rendered for the ear:
emphasis, inline code, headings, block quotes and list markers are dropped; a heading and each
list item end as a sentence does (a pause); a link is read as its text; a table row is read
cell by cell with a pause between cells; a fenced code block of more than one short line is
replaced by a short phrase (docs/TEXT.md says why).  A ``*`` or ``#`` that CommonMark does not
read as markup ("5 * 3", "#3") stays for the normalizer to read.

Works on any part of a reply that the segmenter (server/segmenter.py) cuts: a line, a sentence,
a whole fenced block; it never cuts inside inline markup, so each part parses alone.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from wyoming_kokoro_gguf.synth import markup
from wyoming_kokoro_gguf.synth.normalize import lang_key

# What a fenced code block of more than one short line is read as, per language.
CODE_OMITTED = {
    "en": "Code omitted.",
    "es": "Código omitido.",
    "fr": "Code omis.",
    "it": "Codice omesso.",
    "pt": "Código omitido.",
    "hi": "कोड छोड़ दिया गया।",
    "ja": "コードは省略します。",
    "zh": "代码已省略。",
}
# What a ticked task list item ("- [x] pay the bill") adds, per language.
TASK_DONE = {
    "en": "done",
    "es": "hecho",
    "fr": "fait",
    "it": "fatto",
    "pt": "feito",
    "hi": "पूरा",
    "ja": "かんりょう",
    "zh": "已完成",
}
_TASK_BOX = re.compile(r"\[([ xX])\]\s+")
# A code block of one line up to this long is read like inline code (a command to type).
SHORT_CODE_CHARS = 60

# Pronunciation markup and say-as directives pass through unparsed (synth/markup.py reads them
# later): "[Kokoro](/kˈOkəɹO/)" is also a Markdown link, whose text alone would be read.
_KEEP_RE = re.compile(rf"{markup._INLINE_RE.pattern}|\{{\{{say [^{{}}]{{1,220}}\}}\}}")
_KEPT_RE = re.compile("\ue000(\\d+)\ue001")
# A table's delimiter row ("|---|:--:|") says nothing; a row with outer pipes is a table row.
_DELIMITER_ROW = re.compile(
    r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$"
)
_TABLE_ROW = re.compile(r"^\s*\|(.*\|.*)\|\s*$")
# Marks that end a spoken unit already; a heading or list item without one gets a period.
_ENDS = ".!?…:;。！？"
# Emphasis or code marks left unpaired (a reply cut short) are never read aloud.
_STRAY = re.compile(r"\*{2,}|_{2,}|`+|~~")
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.I)
# A line of only "=" or "-" (a heading's underline seen alone) is not read.
_RULE = re.compile(r"\s*[=\-]+\s*")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    """CommonMark with strikethrough; indented code blocks off (an indented line in a reply is a
    nested list item far more often than code, and a segment alone loses that context)."""
    return MarkdownIt("commonmark").enable("strikethrough").disable("code")


def _table_rows(text: str) -> str:
    """Table rows -> "cell, cell, cell." lines; delimiter rows dropped."""
    lines = []
    for line in text.split("\n"):
        if _DELIMITER_ROW.match(line):
            continue
        row = _TABLE_ROW.match(line)
        if row:
            cells = [c.strip() for c in row[1].split("|")]
            line = ", ".join(c for c in cells if c)
            line = line + "." if line and line[-1] not in _ENDS else line
        lines.append(line.lstrip())
    return "\n".join(lines)


def _keep(text: str) -> tuple[str, list[str]]:
    kept: list[str] = []

    def one(match: re.Match[str]) -> str:
        kept.append(match[0])
        return f"\ue000{len(kept) - 1}\ue001"

    return _KEEP_RE.sub(one, text), kept


def _inline(token: Token) -> str:
    """An inline token's words: marks dropped, links as their text, code as words."""
    out: list[str] = []
    for child in token.children or []:  # an image is one child: its description is not read
        kind = child.type
        if kind == "text":
            out.append(child.content)
        elif kind == "code_inline":
            out.append(_code_words(child.content))
        elif kind in ("softbreak", "hardbreak") or (
            kind == "html_inline" and _LINE_BREAK_TAG.match(child.content)
        ):
            out.append("\n")
    return "".join(out)


def _code_words(code: str) -> str:
    """Inline code read as words: "light.kitchen_ceiling" -> "light.kitchen ceiling"."""
    return re.sub(r"(?<=[^\W_])_+(?=[^\W_])", " ", code).replace("`", "")


def _end(text: str) -> str:
    """A heading or list item ends with a pause, as a sentence does."""
    text = text.rstrip()
    return text + "." if text and text[-1] not in _ENDS else text


def _task(item: str, language: str) -> str:
    """A task list item: "[ ] call" -> "call", "[x] pay" -> "pay, done" (its state is news)."""
    box = _TASK_BOX.match(item)
    if not box:
        return item
    rest = item[box.end() :].rstrip()
    if box[1] == " ":
        return rest
    return f"{rest.rstrip('.')}, {TASK_DONE.get(lang_key(language), TASK_DONE['en'])}"


def _fence(token: Token, language: str) -> str:
    code = token.content.strip()
    if not code:
        return ""
    if "\n" not in code and len(code) <= SHORT_CODE_CHARS:
        return _code_words(code)
    return CODE_OMITTED.get(lang_key(language), CODE_OMITTED["en"])


def _render(tokens: list[Token], language: str) -> list[str]:
    """Block tokens -> the text of each block, in order."""
    blocks: list[str] = []
    ends = 0  # inside a heading or list item: its text ends as a sentence
    for token in tokens:
        kind = token.type
        if kind in ("heading_open", "list_item_open"):
            ends += 1
        elif kind in ("heading_close", "list_item_close"):
            ends -= 1
        elif kind == "inline":
            text = _task(_inline(token), language) if ends else _inline(token)
            if not _RULE.fullmatch(text):
                blocks.append(_end(text) if ends else text)
        elif kind == "fence":
            blocks.append(_fence(token, language))
        elif kind == "html_block":
            blocks.append(re.sub(r"<[^>]*>", " ", token.content))
    return blocks


def speech_text(text: str, language: str = "en-us") -> str:
    """Markdown -> the text to speak, blocks separated by blank lines; plain text unchanged but
    for what CommonMark itself reads as markup."""
    if not text.strip():
        return text
    text, kept = _keep(_table_rows(text))
    blocks = _render(_parser().parse(text), language)
    blocks = [re.sub(r"[ \t]{2,}", " ", _STRAY.sub(" ", b)).strip() for b in blocks]
    spoken = "\n\n".join(b for b in blocks if b)
    spoken = re.sub(r"[ \t]*\|[ \t]*", ", ", spoken)  # a cell of a table without outer pipes
    if kept:
        spoken = _KEPT_RE.sub(lambda m: kept[int(m[1])], spoken)
    return spoken
