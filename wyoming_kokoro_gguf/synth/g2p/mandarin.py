"""Mandarin text -> Kokoro phonemes: jieba words, pypinyin syllables, tone arrows.

Why a front end of its own: without it espeak-ng reads Han characters as "Chinese letter", and
with ``cmn`` its tone digits are not in Kokoro's vocabulary, so the tones are lost.  Kokoro's
Mandarin voices were trained on words segmented by jieba, each syllable written in IPA with
one symbol per affricate (``ʨ ʦ ꭧ`` for j/z/zh, ``ʰ`` for aspiration), the apical vowel of
zi/zhi as ``ɨ``, and the tone as an arrow right after the syllable's vowel: ``→`` (1st), ``↗``
(2nd), ``↓`` (3rd), ``↘`` (4th), nothing for the neutral tone.  Words are separated by spaces.

Tone sandhi: pypinyin applies the 一/不 rules; a run of third tones inside a word is read with
all but its last as second tones (你好 -> ni↗ xau↓).  Arabic numbers are read out first
(cn2an: 23 -> 二十三).  Latin-script words go to ``other`` (espeak-ng English) when given.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import threading
from collections.abc import Callable
from typing import Any

from wyoming_kokoro_gguf.synth.g2p.base import MissingExtra

TONES = {"1": "→", "2": "↗", "3": "↓", "4": "↘", "5": ""}
# Pinyin initial -> phonemes.
_INITIALS = {
    "b": "p", "p": "pʰ", "m": "m", "f": "f", "d": "t", "t": "tʰ", "n": "n", "l": "l",
    "g": "k", "k": "kʰ", "h": "x", "j": "ʨ", "q": "ʨʰ", "x": "ɕ",
    "zh": "ꭧ", "ch": "ꭧʰ", "sh": "ʂ", "r": "ɻ", "z": "ʦ", "c": "ʦʰ", "s": "s",
}  # fmt: skip
# Pinyin final (strict form: iou, uei, uen, ü...) -> phonemes, "0" where the tone goes.
_FINALS = {
    "a": "a0", "ai": "ai0", "an": "a0n", "ang": "a0ŋ", "ao": "au0",
    "e": "ɤ0", "ei": "ei0", "en": "ə0n", "eng": "ə0ŋ", "er": "ɚ0", "o": "wo0",
    "i": "i0", "ia": "ja0", "ian": "jɛ0n", "iang": "ja0ŋ", "iao": "jau0", "ie": "je0",
    "in": "i0n", "iou": "jou0", "ing": "i0ŋ", "iong": "jʊ0ŋ", "ong": "ʊ0ŋ", "ou": "ou0",
    "u": "u0", "ua": "wa0", "uai": "wai0", "uan": "wa0n", "uang": "wa0ŋ", "uei": "wei0",
    "uen": "wə0n", "ueng": "wə0ŋ", "uo": "wo0",
    "ü": "y0", "üe": "ɥe0", "üan": "ɥɛ0n", "ün": "y0n",
}  # fmt: skip
# Syllables without a regular initial + final.
_WHOLE = {"m": "m0", "n": "n0", "ng": "ŋ0", "hm": "xm0", "hng": "xŋ0", "ê": "ɛ0", "io": "jɔ0"}
_APICAL = "ɨ0"  # the i of zi ci si zhi chi shi ri
_PUNCT = {
    "，": ",", "、": ",", "。": ".", "．": ".", "！": "!", "？": "?", "：": ":", "；": ";",
    "…": "…", "—": "—", "～": "—", "“": "“", "”": "”", "「": "“", "」": "”", "『": "“",
    "』": "”", "《": "“", "》": "”", "（": "(", "）": ")", ",": ",", ".": ".", "!": "!",
    "?": "?", ":": ":", ";": ";", "(": "(", ")": ")", '"': '"',
}  # fmt: skip
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_LATIN_WORDS = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]|[A-Za-z]")


def syllable(pinyin: str) -> str:
    """One pinyin syllable with its tone digit (``hao3``) -> Kokoro phonemes (``xau↓``)."""
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    tone = TONES.get(pinyin[-1:], "")
    bare = pinyin[:-1] if pinyin[-1:].isdigit() else pinyin
    bare = bare.replace("v", "ü")
    if bare in _WHOLE:
        return _WHOLE[bare].replace("0", tone)
    initial = to_initials(bare, strict=True)
    final = to_finals(bare, strict=True, v_to_u=True)
    if initial in ("zh", "ch", "sh", "r", "z", "c", "s") and final == "i":
        rhyme = _APICAL
    else:
        rhyme = _FINALS.get(final, "")
    if not rhyme:
        return ""
    return _INITIALS.get(initial, "") + rhyme.replace("0", tone)


def third_tone_sandhi(syllables: list[str]) -> list[str]:
    """In a run of third tones, all but the last are read as second tones."""
    out = list(syllables)
    for i in range(len(out) - 1):
        if out[i].endswith("3") and out[i + 1].endswith("3"):
            out[i] = out[i][:-1] + "2"
    return out


def available() -> bool:
    """Whether the 'zh' extra (jieba, pypinyin, cn2an) is installed."""
    return all(importlib.util.find_spec(name) for name in ("jieba", "pypinyin", "cn2an"))


def _load() -> tuple[Any, Any, Any]:
    try:
        import cn2an
        import jieba
        import pypinyin
    except ImportError as err:
        raise MissingExtra("Mandarin", "zh", "jieba, pypinyin, cn2an", err) from err
    jieba.setLogLevel(60)  # no "Building prefix dict" chatter on the log
    return jieba, pypinyin, cn2an


class MandarinG2P:
    """Mandarin front end; ``other`` phonemizes Latin-script words (e.g. espeak-ng English)."""

    _lock = threading.Lock()  # jieba builds its dictionary lazily, once

    def __init__(self, other: Callable[[str], str] | None = None) -> None:
        self._jieba, self._pypinyin, self._cn2an = _load()
        self.other = other

    def word(self, word: str) -> str:
        """One jieba word of Han characters -> phonemes, syllables written together."""
        style = self._pypinyin.Style.TONE3
        pinyins = self._pypinyin.lazy_pinyin(
            word, style=style, neutral_tone_with_five=True, tone_sandhi=True
        )
        return "".join(syllable(p) for p in third_tone_sandhi(pinyins))

    def phonemize(self, text: str, language: str = "cmn") -> str:
        """Kokoro phonemes for Mandarin ``text`` ('' when nothing is speakable)."""
        if not text.strip():
            return ""
        with contextlib.suppress(Exception):  # odd number shapes are read as written
            text = self._cn2an.transform(text, "an2cn")
        with self._lock:
            tokens = self._jieba.lcut(text, cut_all=False)
        return _join([self._token(t) for t in tokens])

    def _token(self, token: str) -> str:
        if _HAN.fullmatch(token):
            return self.word(token)
        if token.strip() in _PUNCT:
            return _PUNCT[token.strip()]
        if self.other is not None and _LATIN_WORDS.search(token):
            return self.other(token)
        return ""


def _join(parts: list[str]) -> str:
    """Words with single spaces, punctuation glued to the word before it."""
    out = ""
    for part in parts:
        if not part:
            continue
        if part in ",.!?:;…”)—":
            out = out.rstrip() + part + " "
        elif part in "“(":
            out += part
        else:
            out += part + " "
    return " ".join(out.split())
