"""SSML -> units of text with the engine's directives (synth/markup.py).

Why: Home Assistant and other clients send SSML with Wyoming's ``text_format: "ssml"``.  It is
read here with the standard library's expat, hardened: a document type declaration (the only
way to declare entities, internal or external) is refused before parsing, and size and nesting
depth are bounded.  Nothing here fails a request: markup that cannot be parsed is read as plain
text (tags stripped), unknown elements as their text, each with one warning in the log.

Supported: speak, p, s, break (time, strength), prosody rate, say-as (characters, cardinal,
ordinal, digits, date with format, time, telephone), sub alias, phoneme (IPA), voice (name),
lang and xml:lang.  Each unit carries its full state (voice, rate, language) so units can be
synthesized, cached and scheduled independently.
"""

from __future__ import annotations

import html
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from wyoming_kokoro_gguf.synth.markup import MAX_PAUSE_S

_LOG = logging.getLogger(__name__)

MAX_SSML_CHARS = 200_000
MAX_DEPTH = 32
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.7}
_STRENGTHS["x-strong"] = 1.2
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
_SAY_AS = {"characters", "spell-out", "cardinal", "number", "ordinal", "digits", "date", "time"}
_SAY_AS |= {"telephone"}
_LANGUAGES = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", "zh": "cmn", "zh-cn": "cmn"}
_BLOCKS = {"p", "s", "paragraph", "sentence", "speak", "voice"}


class SSMLError(ValueError):
    """Markup that is refused or cannot be parsed (read as plain text instead)."""


@dataclass(frozen=True)
class _State:
    voice: str | None = None
    rate: float = 1.0
    language: str | None = None

    def prefix(self) -> str:
        out = f"{{{{voice {self.voice}}}}}" if self.voice else ""
        out += f"{{{{rate {self.rate:.3f}}}}}" if self.rate != 1.0 else ""
        return out + (f"{{{{lang {self.language}}}}}" if self.language else "")


def parse(text: str) -> ET.Element:
    """SSML -> its element tree; SSMLError for refused or malformed markup."""
    if len(text) > MAX_SSML_CHARS:
        raise SSMLError(f"longer than {MAX_SSML_CHARS} characters")
    if re.search(r"<!DOCTYPE|<!ENTITY", text, re.IGNORECASE):
        raise SSMLError("document type declarations (entities) are not accepted")
    parser = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    root = None
    try:
        parser.feed(text if text.lstrip().startswith("<") else f"<speak>{text}</speak>")
        parser.close()
        for event, element in parser.read_events():
            root = element if root is None else root
            depth += 1 if event == "start" else -1
            if depth > MAX_DEPTH:
                raise SSMLError(f"nested deeper than {MAX_DEPTH} elements")
    except ET.ParseError as err:
        raise SSMLError(f"malformed markup: {err}") from err
    if root is None:
        raise SSMLError("no element")
    return root


def plain_text(text: str) -> str:
    """Broken markup as plain text: tags stripped, character references decoded."""
    text = re.sub(r"<!\[CDATA\[(.*?)\]\]>", r"\1", text, flags=re.DOTALL)
    text = re.sub(
        r"<!DOCTYPE(?:[^<>]|<[^<>]*>)*>|<!--.*?-->|<[/!?A-Za-z][^<>]*(?:>|$)",
        " ",
        text,
        flags=re.DOTALL,
    )
    return " ".join(html.unescape(text.replace("<", " ").replace(">", " ")).split())


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _seconds(value: str) -> float | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", value or "")
    if match is None:
        return None
    seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
    return min(MAX_PAUSE_S, seconds)


def _rate(value: str) -> float:
    value = (value or "").strip().lower()
    if value in _RATES:
        return _RATES[value]
    match = re.fullmatch(r"([+-]?)(\d+(?:\.\d+)?)(%?)", value)
    if match is None:
        return 1.0
    number = float(match[2])
    if match[3] and match[1]:
        number = 100 + number if match[1] == "+" else 100 - number
    factor = number / 100 if match[3] else number
    return min(2.0, max(0.5, factor)) if factor > 0 else 1.0


def _language(tag: str) -> str:
    tag = tag.strip().lower().replace("_", "-")
    return _LANGUAGES.get(tag, tag) if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", tag) else ""


def _clean(text: str) -> str:
    """Element text as it may appear in a unit (no directive or markup brackets)."""
    return " ".join(re.sub(r"[{}\[\]]", " ", text or "").split())


class _Compiler:
    """Walks the tree and collects units; ``units`` is the result."""

    def __init__(self) -> None:
        self.units: list[str] = []
        self.current: list[str] = []
        self.state = _State()
        self.warned = False

    def flush(self) -> None:
        text = " ".join(" ".join(self.current).split())
        self.current = []
        if text:
            self.units.append(self.state.prefix() + text)

    def pause(self, seconds: float) -> None:
        self.flush()
        if seconds > 0:
            self.units.append(f"{{{{pause {seconds:.3f}}}}}")

    def unsupported(self, what: str) -> None:
        if not self.warned:
            self.warned = True
            _LOG.warning("SSML: %s read as its text", what)

    def element(self, el: ET.Element) -> None:
        name = _local(el.tag)
        state = self.state
        if name in _BLOCKS or name in ("prosody", "lang"):
            self.flush()
            self.state = self._state_of(el, name, state)
        if name in ("break",):
            self.break_(el)
        elif name == "say-as":
            self.say_as(el)
        elif name == "sub":
            self.current.append(_clean(el.get("alias", "")) or _clean("".join(el.itertext())))
        elif name == "phoneme":
            self.phoneme(el)
        else:
            if name not in _BLOCKS and name not in ("prosody", "lang", "emphasis", "mark"):
                self.unsupported(f"<{name}>")
            self.current.append(_clean(el.text or ""))
            for child in el:
                self.element(child)
                self.current.append(_clean(child.tail or ""))
        if name in _BLOCKS or self.state is not state:
            self.flush()
            self.state = state

    def _state_of(self, el: ET.Element, name: str, state: _State) -> _State:
        language = _language(el.get(f"{_XML_NS}lang") or el.get("lang") or "")
        if language:
            state = replace(state, language=language)
        if name == "voice" and el.get("name"):
            state = replace(state, voice=re.sub(r"[^\w:.,-]", "", el.get("name", ""))[:80])
        if name == "prosody" and el.get("rate"):
            state = replace(state, rate=min(2.0, max(0.5, state.rate * _rate(el.get("rate", "")))))
        return state

    def break_(self, el: ET.Element) -> None:
        seconds = _seconds(el.get("time", ""))
        if seconds is None:
            seconds = _STRENGTHS.get((el.get("strength") or "medium").lower(), 0.4)
        self.pause(seconds)

    def say_as(self, el: ET.Element) -> None:
        kind = (el.get("interpret-as") or "").lower()
        kind = {"spell-out": "characters", "number": "cardinal"}.get(kind, kind)
        content = _clean("".join(el.itertext()))[:200]
        if kind not in _SAY_AS or not content:
            self.unsupported(f"say-as {kind!r}")
            self.current.append(content)
            return
        fmt = re.sub(r"[^a-z]", "", (el.get("format") or "").lower())[:4]
        self.current.append(f"{{{{say {kind}{':' + fmt if fmt else ''} {content}}}}}")

    def phoneme(self, el: ET.Element) -> None:
        word = _clean("".join(el.itertext()))
        ph = " ".join(re.sub(r"[/()\[\]{}]", "", el.get("ph") or "").split())[:300]
        if (el.get("alphabet") or "ipa").lower() != "ipa" or not ph:
            self.unsupported("a phoneme without IPA")
            self.current.append(word)
            return
        self.current.append(f"[{word or 'x'}](/{ph}/)")


def units(text: str) -> list[str]:
    """SSML -> units of engine text (directives included); never raises on bad markup."""
    try:
        root = parse(text)
    except SSMLError as err:
        _LOG.warning("SSML not parsed (%s): read as plain text", err)
        plain = _clean(plain_text(text[:MAX_SSML_CHARS]))
        return [plain] if plain else []
    compiler = _Compiler()
    compiler.element(root)
    compiler.flush()
    return compiler.units
