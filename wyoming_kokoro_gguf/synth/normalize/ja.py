"""Japanese, in kana: espeak-ng reads kana but not kanji numerals, so numbers are spelled by
num2words and hours, minutes and days take their counters with the sound changes."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table

_DAYS = ("ついたち", "ふつか", "みっか", "よっか", "いつか", "むいか", "なのか", "ようか")
_DAYS += ("ここのか", "とおか")
_MONTHS = (
    "いちがつ にがつ さんがつ しがつ ごがつ ろくがつ しちがつ はちがつ くがつ じゅうがつ"
    " じゅういちがつ じゅうにがつ"
)


def _spell(n: int, purpose: str) -> str:
    from num2words import num2words

    word = num2words(n, lang="ja", reading=True)
    return word + "ばんめ" if purpose == "ordinal" else word


def counter(n: int, counter: str) -> str:
    """Japanese hour (じ) and minute (ふん) counters with their sound changes."""
    word = spell(n, "ja")
    if counter == "じ":
        for tail, new in (("よん", "よ"), ("なな", "しち"), ("きゅう", "く")):
            if word.endswith(tail):
                return word[: -len(tail)] + new + "じ"
        return word + "じ"
    changes = {"いち": "いっぷん", "さん": "さんぷん", "よん": "よんぷん", "ろく": "ろっぷん"}
    changes.update({"はち": "はっぷん", "じゅう": "じゅっぷん"})
    for tail, new in changes.items():
        if word.endswith(tail):
            return word[: -len(tail)] + new
    return word + "ふん"


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    h = hour_24(h, half)
    return counter(h, "じ") + (counter(m, "ふん") if m else "")


def _date(year: int | None, month: int, day: int, language: str) -> str:
    name = _MONTHS.split()[month - 1]
    y = spell(year, language, "year") if year is not None else ""
    d = {14: "じゅうよっか", 20: "はつか", 24: "にじゅうよっか"}.get(day)
    d = d or (_DAYS[day - 1] if day <= 10 else spell(day, "ja") + "にち")
    return (f"{y}ねん" if y else "") + name + d


register(
    "ja",
    Lang(
        "てん",
        "マイナス",
        "{n}パーセント",
        "{a}から{b}",
        _MONTHS,
        "げつようび かようび すいようび もくようび きんようび どようび にちようび",
        {
            **{"°C": "{n}ど", "°F": "かし{n}ど", "°": "{n}ど", "%": "{n}パーセント"},
            **unit_table(
                "W={n}ワット; kW={n}キロワット; kWh={n}キロワットアワー; km={n}キロメートル;"
                " kg={n}キログラム; km/h=じそく{n}キロ; s={n}びょう; h={n}じかん"
            ),
        },
        {"¥": ("えん", "えん", "", ""), "円": ("えん", "えん", "", "")},
        sep="",
        says={"dot": "ドット", "ip dot": "てん"},
        clock=_clock,
        date=_date,
        counters={"min": lambda n: counter(n, "ふん")},  # "ごふん", "じゅっぷん"
        decimal_point=True,
        speller=_spell,
    ),
)
