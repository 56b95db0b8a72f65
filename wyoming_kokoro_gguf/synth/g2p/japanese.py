"""Japanese text -> Kokoro phonemes, from pyopenjtalk-plus readings.

Why a front end of its own: espeak-ng names each kanji ("Chinese letter") instead of reading it.
pyopenjtalk-plus (OpenJTalk with its dictionary inside the wheel, so nothing is downloaded)
gives each word's reading in katakana, with numbers already read out; this module writes those
readings in the phoneme conventions Kokoro v1.0's Japanese voices were trained on:

- one symbol string per mora: ``ɯ`` for u, ``ɨ`` after s/z/ts and in palatal glides (``kʲɨ``),
  ``ɕ ʥ ʨ ʦ ç ɸ ɾ ɲ β`` for shi/ji/chi/tsu/hi/fu/r/ni/w, ``ʲ`` on consonants before i
  (``kʲi mʲi ɾʲi``), ``ʣ`` for z before a/e/o;
- the long-vowel mark ``ー`` -> ``ː``; the geminate ``ッ`` -> ``ʔ`` joined to both neighbours;
- the moraic nasal ``ン`` takes the place of the next consonant in its word: ``m`` before
  m/p/b, ``ŋ`` before k/g, ``ɲ`` before ɲ/ʨ/ʥ, ``n`` before n/t/d/ɾ/z, ``ɴ`` elsewhere and at
  the end of a word;
- words separated by spaces, punctuation glued to the word before it.

Kokoro's vocabulary has no devoicing mark, so devoiced vowels (``desɨ``) stay written; the
model devoices them itself.  Pitch accent can be marked (``accent=True``: ``ˈ`` before a
word's accent nucleus), but v1.0 was not trained with such marks in Japanese and the measured
error rate is lower without them (docs/G2P.md), so they are off by default.
"""

from __future__ import annotations

import importlib.util
import threading
import unicodedata
from typing import Any

from wyoming_kokoro_gguf.synth.g2p.base import MissingExtra

# Katakana -> phonemes, one mora each.
_KANA = {
    "ア": "a", "イ": "i", "ウ": "ɯ", "エ": "e", "オ": "o",
    "カ": "ka", "キ": "kʲi", "ク": "kɯ", "ケ": "ke", "コ": "ko",
    "ガ": "ɡa", "ギ": "ɡʲi", "グ": "ɡɯ", "ゲ": "ɡe", "ゴ": "ɡo",
    "サ": "sa", "シ": "ɕi", "ス": "sɨ", "セ": "se", "ソ": "so",
    "ザ": "ʣa", "ジ": "ʥi", "ズ": "zɨ", "ゼ": "ʣe", "ゾ": "ʣo",
    "タ": "ta", "チ": "ʨi", "ツ": "ʦɨ", "テ": "te", "ト": "to",
    "ダ": "da", "ヂ": "ʥi", "ヅ": "zɨ", "デ": "de", "ド": "do",
    "ナ": "na", "ニ": "ɲi", "ヌ": "nɯ", "ネ": "ne", "ノ": "no",
    "ハ": "ha", "ヒ": "çi", "フ": "ɸɯ", "ヘ": "he", "ホ": "ho",
    "バ": "ba", "ビ": "bʲi", "ブ": "bɯ", "ベ": "be", "ボ": "bo",
    "パ": "pa", "ピ": "pʲi", "プ": "pɯ", "ペ": "pe", "ポ": "po",
    "マ": "ma", "ミ": "mʲi", "ム": "mɯ", "メ": "me", "モ": "mo",
    "ヤ": "ja", "ユ": "jɯ", "ヨ": "jo",
    "ラ": "ɾa", "リ": "ɾʲi", "ル": "ɾɯ", "レ": "ɾe", "ロ": "ɾo",
    "ワ": "βa", "ヰ": "i", "ヱ": "e", "ヲ": "o", "ヴ": "vɯ",
    "ヷ": "va", "ヸ": "vʲi", "ヹ": "ve", "ヺ": "vo", "ヵ": "ka", "ヶ": "ke",
    "ァ": "a", "ィ": "i", "ゥ": "ɯ", "ェ": "e", "ォ": "o",
    "ャ": "ja", "ュ": "jɯ", "ョ": "jo", "ヮ": "βa",
}  # fmt: skip
# Small kana that fuse with the kana before them into one mora.
_SMALL = frozenset("ァィゥェォャュョヮ")
# Vowel a glide-forming small kana gives after an i-column kana (キャ -> kʲa, シュ -> ɕɨ).
_GLIDE_VOWELS = {"ャ": "a", "ュ": "ɨ", "ョ": "o", "ェ": "e"}
# Fused moras that do not follow the i-column rule.
_FUSED = {
    "イェ": "je", "ウィ": "βi", "ウェ": "βe", "ウォ": "βo", "ウァ": "βa",
    "ファ": "ɸa", "フィ": "ɸʲi", "フェ": "ɸe", "フォ": "ɸo", "フュ": "ɸʲɨ", "フョ": "ɸʲo",
    "ティ": "tʲi", "テュ": "tʲɨ", "ディ": "dʲi", "デュ": "dʲɨ", "トゥ": "tɯ", "ドゥ": "dɯ",
    "ツァ": "ʦa", "ツィ": "ʦʲi", "ツェ": "ʦe", "ツォ": "ʦo",
    "ヴァ": "va", "ヴィ": "vʲi", "ヴェ": "ve", "ヴォ": "vo", "ヴュ": "bʲɨ", "ヴョ": "bʲo",
    "クァ": "kᵝa", "クィ": "kᵝi", "クェ": "kᵝe", "クォ": "kᵝo", "クヮ": "kᵝa",
    "グァ": "ɡᵝa", "グィ": "ɡᵝi", "グェ": "ɡᵝe", "グォ": "ɡᵝo", "グヮ": "ɡᵝa",
    "スィ": "si", "ズィ": "zi",
}  # fmt: skip
LONG = "ː"
GEMINATE = "ʔ"
NASAL = "ɴ"
# Moraic nasal before a mora starting with these -> its sound there.
_NASAL_BEFORE = (("mpb", "m"), ("kɡ", "ŋ"), ("ɲʨʥ", "ɲ"), ("ntdɾz", "n"))
# Punctuation (the word's written form) -> Kokoro's; other symbols are silent.
_PUNCT = {
    "。": ".", "、": ",", "，": ",", "．": ".", "？": "?", "！": "!", "?": "?", "!": "!",
    ",": ",", ".": ".", "：": ":", ":": ":", "；": ";", ";": ";", "…": "…", "‥": "…",
    "「": "“", "」": "”", "『": "“", "』": "”", "（": "(", "）": ")", "(": "(", ")": ")",
    "〜": "—", "～": "—", "ー": "—", "―": "—", "—": "—", "・": " ", "“": "“", "”": "”",
}  # fmt: skip
_OPENING = frozenset("“(")
_ACCENT = "ˈ"


def moras(reading: str) -> list[str]:
    """Split a katakana reading into moras (small kana join the kana before them)."""
    out: list[str] = []
    for ch in reading:
        if ch in _SMALL and out and out[-1][-1] not in _SMALL and out[-1] in _KANA:
            out[-1] += ch
        elif ch in _KANA or ch in "ッンー":
            out.append(ch)
    return out


def mora_phonemes(mora: str) -> str:
    """Phonemes of one mora other than ッ, ン and ー (which depend on their neighbours)."""
    if mora in _FUSED:
        return _FUSED[mora]
    if len(mora) == 2:
        head, small = _KANA[mora[0]], mora[1]
        if head.endswith("i") and small in _GLIDE_VOWELS:  # i-column: its consonant glides
            return head[:-1] + _GLIDE_VOWELS[small]
        return head[:-1] + _KANA[small][-1]  # any other: the small kana's vowel
    return _KANA.get(mora, "")


def _nasal(following: str) -> str:
    for starts, sound in _NASAL_BEFORE:
        if following and following[0] in starts:
            return sound
    return NASAL


def reading_phonemes(reading: str, accent: int = 0) -> str:
    """A katakana reading -> phonemes; ``accent`` > 0 marks that mora as the accent nucleus."""
    units = moras(reading)
    sounds = [mora_phonemes(m) for m in units]
    out = []
    for i, mora in enumerate(units):
        if mora == "ン":
            nxt = next((s for s in sounds[i + 1 :] if s), "")
            sound = _nasal(nxt)
        elif mora == "ッ":
            sound = GEMINATE
        elif mora == "ー":
            sound = LONG
        else:
            sound = sounds[i]
        if accent == i + 1 and sound not in (LONG, GEMINATE):
            sound = _ACCENT + sound
        out.append(sound)
    return "".join(out)


def available() -> bool:
    """Whether the 'ja' extra (pyopenjtalk-plus) is installed."""
    return importlib.util.find_spec("pyopenjtalk") is not None


def _load_openjtalk() -> Any:
    try:
        import pyopenjtalk
    except ImportError as err:
        raise MissingExtra("Japanese", "ja", "pyopenjtalk-plus", err) from err
    return pyopenjtalk


class JapaneseG2P:
    """Japanese front end: pyopenjtalk-plus words -> Kokoro phonemes, one call at a time."""

    _lock = threading.Lock()  # OpenJTalk's analyser is one process-wide object

    def __init__(self, accent: bool = False) -> None:
        self._jtalk = _load_openjtalk()
        self.accent = accent

    def words(self, text: str) -> list[dict[str, Any]]:
        """pyopenjtalk's analysis (one dict per word) of NFKC-normalized text."""
        text = unicodedata.normalize("NFKC", text)
        with self._lock:
            return list(self._jtalk.run_frontend(text))

    def phonemize(self, text: str, language: str = "ja") -> str:
        """Kokoro phonemes for Japanese ``text`` ('' when nothing is speakable)."""
        if not text.strip():
            return ""
        return join_words(self._word_phonemes(self.words(text)))

    def _word_phonemes(self, nodes: list[dict[str, Any]]) -> list[str]:
        """One phoneme string per word or punctuation mark."""
        words: list[tuple[str, int] | str] = []  # (reading, accent nucleus) or punctuation
        previous: dict[str, Any] | None = None
        nuclei = _nuclei(nodes) if self.accent else [0] * len(nodes)
        for node, nucleus in zip(nodes, nuclei, strict=True):
            reading = _reading(node)
            if not reading:
                mark = _PUNCT.get(str(node.get("string", "")), "")
                if mark:
                    words.append(mark)
                previous = None
                continue
            last = words[-1] if words else None
            if previous is not None and isinstance(last, tuple) and _continues(previous, node):
                offset = len(moras(last[0]))
                words[-1] = (last[0] + reading, last[1] or (nucleus and offset + nucleus))
            else:
                words.append((reading, nucleus))
            previous = node
        return [w if isinstance(w, str) else reading_phonemes(*w) for w in words]


def _nuclei(nodes: list[dict[str, Any]]) -> list[int]:
    """Per word, the mora (1-based) where its accent phrase falls in pitch, or 0.

    OpenJTalk gives each accent phrase's accent on its first word (words after it carry
    ``chain_flag`` 1), counted in moras from the phrase start; 0 means no fall (heiban).
    """
    out = []
    phrase_accent = done = 0
    for node in nodes:
        size = int(node.get("mora_size") or 0)
        if node.get("chain_flag") != 1:
            phrase_accent, done = int(node.get("acc") or 0), 0
        nucleus = phrase_accent - done
        out.append(nucleus if 1 <= nucleus <= size else 0)
        done += size
    return out


def _continues(previous: dict[str, Any], node: dict[str, Any]) -> bool:
    """Whether ``node`` is written in one word with the one before it.

    Why: the spaces Kokoro saw separate words, not OpenJTalk's morphemes: numerals with their
    counters (ɕiʨiʥi), auxiliary chains (maɕita), a verb with its te-form (ɕite) and compound
    nouns are one word each.
    """
    pos, group = node.get("pos"), node.get("pos_group1")
    before, before_group = previous.get("pos"), previous.get("pos_group1")
    if before_group == "数":
        return group in ("数", "接尾")
    if pos == "助動詞":
        return before == "助動詞"
    if group == "接続助詞":
        return before == "動詞"
    if pos == "名詞" and group == "一般" and before == "名詞" and before_group == "一般":
        return node.get("chain_flag") == 1
    return False


def _reading(node: dict[str, Any]) -> str:
    """A word's spoken katakana ('' for punctuation and anything without a reading)."""
    if int(node.get("mora_size") or 0) <= 0:
        return ""
    return "".join(ch for ch in str(node.get("pron", "")) if ch in _KANA or ch in "ッンー")


def _first_mora(reading: str) -> str:
    units = moras(reading)
    return units[0] if units else ""


def join_words(words: list[str]) -> str:
    """Words with single spaces; punctuation glued to the word before, ``ʔ`` to both sides."""
    out = ""
    for word in words:
        if word in (".", ",", "?", "!", ":", ";", "…", "”", ")", "—"):
            out = out.rstrip() + word + " "
        elif word in _OPENING:
            out += word
        elif word == " ":
            out = out.rstrip() + " "
        else:
            out += word + " "
    out = " ".join(out.split())
    return out.replace(" " + GEMINATE, GEMINATE).replace(GEMINATE + " ", GEMINATE)
