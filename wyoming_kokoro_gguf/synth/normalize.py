"""Text -> speakable words, one piece at a time, before phonemization.

Why: espeak-ng reads "2 min" as "two men", "15 km/h" letter by letter and "2026-12-02" as digits
and dashes, and Kokoro says what espeak wrote.  Numbers, times, dates, units, currencies,
abbreviations and symbols are written out here as the words a listener expects, in the piece's
language (the espeak-ng language it is phonemized with).

Numbers are spelled by unicode-rbnf (CLDR rules for every Kokoro language); Japanese by num2words
in kana, because espeak-ng reads kana but not kanji numerals (docs/TEXT.md compares the two).
Words (units, months, abbreviations...) are data: the ``LANGS`` tables below.

Every stage is a function ``(text, language) -> text`` (``Stage``): pronunciation lexicons or
SSML can be added to ``STAGES`` the same way.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

_LOG = logging.getLogger(__name__)

Stage = Callable[[str, str], str]

# Longer integers are read digit by digit (ids, serial numbers; the spellers stop near 10^17).
MAX_CARDINAL_DIGITS = 15


# ---------------------------------------------------------------- word tables, per language


@dataclass(frozen=True)
class Lang:
    """The words one language needs; templates take {n} (a number in words) or {a}/{b}."""

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


# English units: symbol -> (singular, plural); "{n}" is the number.  Only after a number.
_EN_UNITS: dict[str, str | tuple[str, str]] = {
    "°C": ("{n} degree Celsius", "{n} degrees Celsius"),
    "°F": ("{n} degree Fahrenheit", "{n} degrees Fahrenheit"),
    "°": ("{n} degree", "{n} degrees"),
    "K": ("{n} kelvin", "{n} kelvin"),
    "W": ("{n} watt", "{n} watts"),
    "kW": ("{n} kilowatt", "{n} kilowatts"),
    "MW": ("{n} megawatt", "{n} megawatts"),
    "Wh": ("{n} watt hour", "{n} watt hours"),
    "kWh": ("{n} kilowatt hour", "{n} kilowatt hours"),
    "MWh": ("{n} megawatt hour", "{n} megawatt hours"),
    "VA": ("{n} volt ampere", "{n} volt amperes"),
    "V": ("{n} volt", "{n} volts"),
    "mV": ("{n} millivolt", "{n} millivolts"),
    "A": ("{n} amp", "{n} amps"),
    "mA": ("{n} milliamp", "{n} milliamps"),
    "Hz": "{n} hertz",
    "kHz": "{n} kilohertz",
    "MHz": "{n} megahertz",
    "GHz": "{n} gigahertz",
    "hPa": ("{n} hectopascal", "{n} hectopascals"),
    "kPa": ("{n} kilopascal", "{n} kilopascals"),
    "Pa": ("{n} pascal", "{n} pascals"),
    "mbar": ("{n} millibar", "{n} millibars"),
    "bar": ("{n} bar", "{n} bars"),
    "psi": "{n} P S I",
    "inHg": ("{n} inch of mercury", "{n} inches of mercury"),
    "mmHg": ("{n} millimeter of mercury", "{n} millimeters of mercury"),
    "mm": ("{n} millimeter", "{n} millimeters"),
    "cm": ("{n} centimeter", "{n} centimeters"),
    "m": ("{n} meter", "{n} meters"),
    "km": ("{n} kilometer", "{n} kilometers"),
    "in": ("{n} inch", "{n} inches"),
    "ft": ("{n} foot", "{n} feet"),
    "yd": ("{n} yard", "{n} yards"),
    "mi": ("{n} mile", "{n} miles"),
    "km/h": ("{n} kilometer per hour", "{n} kilometers per hour"),
    "kph": ("{n} kilometer per hour", "{n} kilometers per hour"),
    "mph": ("{n} mile per hour", "{n} miles per hour"),
    "m/s": ("{n} meter per second", "{n} meters per second"),
    "kn": ("{n} knot", "{n} knots"),
    "mm/h": ("{n} millimeter per hour", "{n} millimeters per hour"),
    "L": ("{n} liter", "{n} liters"),
    "l": ("{n} liter", "{n} liters"),
    "mL": ("{n} milliliter", "{n} milliliters"),
    "ml": ("{n} milliliter", "{n} milliliters"),
    "gal": ("{n} gallon", "{n} gallons"),
    "m3": ("{n} cubic meter", "{n} cubic meters"),
    "m2": ("{n} square meter", "{n} square meters"),
    "m3/h": ("{n} cubic meter per hour", "{n} cubic meters per hour"),
    "lx": "{n} lux",
    "lm": "{n} lumens",
    "ppm": "{n} parts per million",
    "ppb": "{n} parts per billion",
    "μg/m3": ("{n} microgram per cubic meter", "{n} micrograms per cubic meter"),
    "mg/m3": ("{n} milligram per cubic meter", "{n} milligrams per cubic meter"),
    "dB": ("{n} decibel", "{n} decibels"),
    "dBm": ("{n} decibel milliwatt", "{n} decibel milliwatts"),
    "dBA": ("{n} decibel A", "{n} decibels A"),
    "kB": ("{n} kilobyte", "{n} kilobytes"),
    "MB": ("{n} megabyte", "{n} megabytes"),
    "GB": ("{n} gigabyte", "{n} gigabytes"),
    "TB": ("{n} terabyte", "{n} terabytes"),
    "Mbit/s": ("{n} megabit per second", "{n} megabits per second"),
    "Mbps": ("{n} megabit per second", "{n} megabits per second"),
    "kbit/s": ("{n} kilobit per second", "{n} kilobits per second"),
    "Gbit/s": ("{n} gigabit per second", "{n} gigabits per second"),
    "MB/s": ("{n} megabyte per second", "{n} megabytes per second"),
    "bpm": ("{n} beat per minute", "{n} beats per minute"),
    "kg": ("{n} kilogram", "{n} kilograms"),
    "g": ("{n} gram", "{n} grams"),
    "mg": ("{n} milligram", "{n} milligrams"),
    "lb": ("{n} pound", "{n} pounds"),
    "lbs": ("{n} pound", "{n} pounds"),
    "oz": ("{n} ounce", "{n} ounces"),
    "h": ("{n} hour", "{n} hours"),
    "hr": ("{n} hour", "{n} hours"),
    "hrs": ("{n} hour", "{n} hours"),
    "min": ("{n} minute", "{n} minutes"),
    "mins": ("{n} minute", "{n} minutes"),
    "s": ("{n} second", "{n} seconds"),
    "sec": ("{n} second", "{n} seconds"),
    "ms": ("{n} millisecond", "{n} milliseconds"),
    "d": ("{n} day", "{n} days"),
    "ct": ("{n} cent", "{n} cents"),
    "%": "{n} percent",
}

_EN_WORDS = {
    "Dr.": "Doctor",
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Prof.": "Professor",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "Mt.": "Mount",
    "No.": "number",
    "no.": "number",
    "approx.": "approximately",
    "Approx.": "Approximately",
    "vs.": "versus",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "min.": "minimum",
    "max.": "maximum",
    "temp.": "temperature",
    "Ave.": "Avenue",
    "Rd.": "Road",
    "&": "and",
    "+": "plus",
    "@": "at",
    "=": "equals",
    "~": "about",
    "≈": "about",
    "×": "times",
    "≥": "at least",
    "≤": "at most",
    "±": "plus or minus",
    "≠": "not equal to",
}


def _units(spec: str) -> dict[str, str | tuple[str, str]]:
    """Compact unit tables: "W=vatio|vatios; Hz=hercios" -> {"W": ("{n} vatio", "{n} vatios"),
    "Hz": "{n} hercios"}; a word with its own "{n}" ("{n}瓦") or "{f}" (the number in the
    feminine: "{f} hora") is kept as written."""
    out: dict[str, str | tuple[str, str]] = {}
    for item in spec.split(";"):
        symbol, _, words = item.strip().partition("=")
        forms = [w if "{" in w else "{n} " + w for w in words.split("|")]
        out[symbol] = forms[0] if len(forms) == 1 else (forms[0], forms[1])
    return out


LANGS: dict[str, Lang] = {
    "en": Lang(
        "point",
        "minus",
        "{n} percent",
        "{a} to {b}",
        "January February March April May June July August September October November December",
        "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
        _EN_UNITS,
        {
            "$": ("dollar", "dollars", "cent", "cents"),
            "USD": ("dollar", "dollars", "cent", "cents"),
            "€": ("euro", "euros", "cent", "cents"),
            "EUR": ("euro", "euros", "cent", "cents"),
            "£": ("pound", "pounds", "penny", "pence"),
            "GBP": ("pound", "pounds", "penny", "pence"),
            "¥": ("yen", "yen", "", ""),
            "JPY": ("yen", "yen", "", ""),
        },
        _EN_WORDS,
    ),
    "es": Lang(
        "coma",
        "menos",
        "{n} por ciento",
        "{a} a {b}",
        "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
        "lunes martes miércoles jueves viernes sábado domingo",
        {
            "°C": ("{n} grado Celsius", "{n} grados Celsius"),
            "°F": ("{n} grado Fahrenheit", "{n} grados Fahrenheit"),
            "°": ("{n} grado", "{n} grados"),
            "%": "{n} por ciento",
            "km/h": "{n} kilómetros por hora",
            "kWh": "{n} kilovatios hora",
            **_units(
                "W=vatio|vatios; kW=kilovatio|kilovatios; Wh=vatio hora|vatios hora;"
                " V=voltio|voltios; A=amperio|amperios; Hz=hercios; hPa=hectopascales;"
                " mm=milímetro|milímetros; cm=centímetro|centímetros; m=metro|metros;"
                " km=kilómetro|kilómetros; m/s=metros por segundo; L=litro|litros;"
                " l=litro|litros; m3=metro cúbico|metros cúbicos; kg=kilogramo|kilogramos;"
                " g=gramo|gramos; s=segundo|segundos; ppm=partes por millón;"
                " dB=decibelio|decibelios; lx=lux; GB=gigabytes; MB=megabytes"
            ),
            "min": ("{n} minuto", "{n} minutos"),
            "h": ("{f} hora", "{f} horas"),
        },
        {"€": ("euro", "euros", "céntimo", "céntimos"), "$": ("dólar", "dólares", "", "")},
        {"Sr.": "señor", "Sra.": "señora", "Dr.": "doctor", "&": "y"},
    ),
    "fr": Lang(
        "virgule",
        "moins",
        "{n} pour cent",
        "{a} à {b}",
        "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
        "lundi mardi mercredi jeudi vendredi samedi dimanche",
        {
            "°C": ("{n} degré Celsius", "{n} degrés Celsius"),
            "°F": ("{n} degré Fahrenheit", "{n} degrés Fahrenheit"),
            "°": ("{n} degré", "{n} degrés"),
            "%": "{n} pour cent",
            "km/h": "{n} kilomètres heure",
            "kWh": ("{n} kilowattheure", "{n} kilowattheures"),
            **_units(
                "W=watt|watts; kW=kilowatt|kilowatts; Wh=wattheure|wattheures; V=volt|volts;"
                " A=ampère|ampères; Hz=hertz; hPa=hectopascals; mm=millimètre|millimètres;"
                " cm=centimètre|centimètres; m=mètre|mètres; km=kilomètre|kilomètres;"
                " m/s=mètres par seconde; L=litre|litres; l=litre|litres;"
                " m3=mètre cube|mètres cubes; kg=kilogramme|kilogrammes; g=gramme|grammes;"
                " s={f} seconde|{f} secondes; ppm=parties par million; dB=décibel|décibels; lx=lux;"
                " GB=gigaoctets; MB=mégaoctets"
            ),
            "min": ("{f} minute", "{f} minutes"),
            "h": ("{f} heure", "{f} heures"),
        },
        {"€": ("euro", "euros", "centime", "centimes"), "$": ("dollar", "dollars", "", "")},
        {"M.": "monsieur", "Mme": "madame", "Dr": "docteur", "&": "et"},
    ),
    "it": Lang(
        "virgola",
        "meno",
        "{n} per cento",
        "{a} a {b}",
        "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
        "lunedì martedì mercoledì giovedì venerdì sabato domenica",
        {
            "°C": ("{n} grado Celsius", "{n} gradi Celsius"),
            "°F": ("{n} grado Fahrenheit", "{n} gradi Fahrenheit"),
            "°": ("{n} grado", "{n} gradi"),
            "%": "{n} per cento",
            "km/h": "{n} chilometri orari",
            "kWh": "{n} chilowattora",
            **_units(
                "W=watt; kW=kilowatt; Wh=wattora; V=volt; A=ampere; Hz=hertz; hPa=ettopascal;"
                " mm=millimetro|millimetri; cm=centimetro|centimetri; m=metro|metri;"
                " km=chilometro|chilometri; m/s=metri al secondo; L=litro|litri; l=litro|litri;"
                " m3=metro cubo|metri cubi; kg=chilogrammo|chilogrammi; g=grammo|grammi;"
                " s=secondo|secondi; ppm=parti per milione; dB=decibel; lx=lux; GB=gigabyte"
            ),
            "min": ("{n} minuto", "{n} minuti"),
            "h": ("{f} ora", "{f} ore"),
        },
        {"€": ("euro", "euro", "centesimo", "centesimi"), "$": ("dollaro", "dollari", "", "")},
        {"Sig.": "signor", "Dott.": "dottor", "&": "e"},
    ),
    "pt": Lang(
        "vírgula",
        "menos",
        "{n} por cento",
        "{a} a {b}",
        "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
        "segunda-feira terça-feira quarta-feira quinta-feira sexta-feira sábado domingo",
        {
            "°C": ("{n} grau Celsius", "{n} graus Celsius"),
            "°F": ("{n} grau Fahrenheit", "{n} graus Fahrenheit"),
            "°": ("{n} grau", "{n} graus"),
            "%": "{n} por cento",
            "km/h": "{n} quilômetros por hora",
            "kWh": "{n} quilowatts-hora",
            **_units(
                "W=watt|watts; kW=quilowatt|quilowatts; Wh=watt-hora|watts-hora; V=volt|volts;"
                " A=ampere|amperes; Hz=hertz; hPa=hectopascais; mm=milímetro|milímetros;"
                " cm=centímetro|centímetros; m=metro|metros; km=quilômetro|quilômetros;"
                " m/s=metros por segundo; L=litro|litros; l=litro|litros;"
                " m3=metro cúbico|metros cúbicos; kg=quilo|quilos; g=grama|gramas;"
                " s=segundo|segundos; ppm=partes por milhão; dB=decibel|decibéis; lx=lux;"
                " GB=gigabytes"
            ),
            "min": ("{n} minuto", "{n} minutos"),
            "h": ("{f} hora", "{f} horas"),
        },
        {
            "R$": ("real", "reais", "centavo", "centavos"),
            "€": ("euro", "euros", "centavo", "centavos"),
            "$": ("dólar", "dólares", "centavo", "centavos"),
        },
        {"Sr.": "senhor", "Sra.": "senhora", "Dr.": "doutor", "&": "e"},
    ),
    "hi": Lang(
        "दशमलव",
        "ऋण",
        "{n} प्रतिशत",
        "{a} से {b}",
        "जनवरी फ़रवरी मार्च अप्रैल मई जून जुलाई अगस्त सितंबर अक्टूबर नवंबर दिसंबर",
        "सोमवार मंगलवार बुधवार गुरुवार शुक्रवार शनिवार रविवार",
        {
            "°C": "{n} डिग्री सेल्सियस",
            "°F": "{n} डिग्री फ़ारेनहाइट",
            "°": "{n} डिग्री",
            "%": "{n} प्रतिशत",
            "km/h": "{n} किलोमीटर प्रति घंटा",
            "min": "{n} मिनट",
            **_units(
                "W=वाट; kW=किलोवाट; kWh=किलोवाट घंटा; V=वोल्ट; A=एम्पियर; km=किलोमीटर;"
                " m=मीटर; cm=सेंटीमीटर; mm=मिलीमीटर; L=लीटर; kg=किलोग्राम; g=ग्राम;"
                " s=सेकंड; h=घंटे"
            ),
        },
        {"₹": ("रुपया", "रुपये", "पैसा", "पैसे")},
    ),
    "ja": Lang(
        "てん",
        "マイナス",
        "{n}パーセント",
        "{a}から{b}",
        "いちがつ にがつ さんがつ しがつ ごがつ ろくがつ しちがつ はちがつ くがつ じゅうがつ"
        " じゅういちがつ じゅうにがつ",
        "げつようび かようび すいようび もくようび きんようび どようび にちようび",
        {
            **{"°C": "{n}ど", "°F": "かし{n}ど", "°": "{n}ど", "%": "{n}パーセント"},
            **_units(
                "W={n}ワット; kW={n}キロワット; kWh={n}キロワットアワー; km={n}キロメートル;"
                " kg={n}キログラム; km/h=じそく{n}キロ; s={n}びょう; h={n}じかん"
            ),
        },
        {"¥": ("えん", "えん", "", ""), "円": ("えん", "えん", "", "")},
        sep="",
    ),
    "zh": Lang(
        "点",
        "负",
        "百分之{n}",
        "{a}到{b}",
        "一月 二月 三月 四月 五月 六月 七月 八月 九月 十月 十一月 十二月",
        "星期一 星期二 星期三 星期四 星期五 星期六 星期日",
        {
            **{"°C": "{n}摄氏度", "°F": "{n}华氏度", "°": "{n}度", "%": "百分之{n}"},
            **_units(
                "W={n}瓦; kW={n}千瓦; kWh={n}千瓦时; km={n}公里; m={n}米; kg={n}公斤;"
                " km/h=每小时{n}公里; s={n}秒; min={n}分钟; h={n}小时"
            ),
        },
        {"¥": ("元", "元", "", ""), "￥": ("元", "元", "", "")},
        sep="",
    ),
}


def lang_key(language: str) -> str:
    """espeak-ng language ("en-gb", "fr-fr", "pt-br", "cmn") -> table key ("en", "fr", ...)."""
    base = language.lower().split("-")[0]
    return {"cmn": "zh", "yue": "zh"}.get(base, base)


def table(language: str) -> Lang:
    """The language's word tables (English for a language without one)."""
    return LANGS.get(lang_key(language), LANGS["en"])


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
    if len(str(abs(n))) > MAX_CARDINAL_DIGITS:
        return digits(str(abs(n)), language)
    if key == "ja":  # kana: espeak-ng cannot read kanji numerals
        from num2words import num2words

        word = num2words(abs(n), lang="ja", reading=True)
        word = word + "ばんめ" if purpose == "ordinal" else word
        return "マイナス" + word if n < 0 else word
    kinds = {"cardinal": FormatPurpose.CARDINAL, "ordinal": FormatPurpose.ORDINAL}
    kinds["year"] = FormatPurpose.YEAR if key == "en" else FormatPurpose.CARDINAL
    kinds["numbering"] = FormatPurpose.CARDINAL
    result = _rbnf(key).format_number(n, kinds[purpose])
    gender = "feminine" if feminine else "masculine"
    text = result.text_by_ruleset.get(f"spellout-{purpose}-{gender}", result.text)
    if key == "en" and language.lower() == "en-gb" and purpose in ("cardinal", "numbering"):
        text = _british_and(text)
    return text.replace(",", "")


def _british_and(words: str) -> str:
    """British English says "one hundred and one", "two thousand and six"."""
    big = r"(?:thousand|million|billion|trillion)"
    words = re.sub(rf"\bhundred (?!{big}\b)", "hundred and ", words)
    return re.sub(rf"\b({big}) ((?:\w+-)?\w+)$", r"\1 and \2", words)


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
    if lang_key(language) in ("en", "hi", "ja", "zh"):
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


# ---------------------------------------------------------------- patterns

# A written number: digits with group separators and a decimal part ("1,234.5", "19,5").
# Not inside a Latin word ("PM2.5" is split first), but right after kana or hanzi ("は19.5").
NUM = r"(?<![0-9A-Za-zÀ-ÿ.,])(?:(?<![\d])[-−])?\d+(?:[,.\u202f]\d+)*"
_END = r"(?![0-9A-Za-zÀ-ÿ/°])"
_UNIT_WORDS = sorted({u for lang in LANGS.values() for u in lang.units}, key=len, reverse=True)
# Units that are also words or letters ("5 in the box", "plan 2 A") need no word after them.
_AMBIGUOUS_UNITS = {"in", "A", "K", "d"}
_UNIT_RE = re.compile(rf"({NUM})\s?(°\s?[CF]|{'|'.join(re.escape(u) for u in _UNIT_WORDS)}){_END}")
_TIME_RE = re.compile(
    r"(?<![\d:.])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:])"
    r"(?:\s?([AaPp])\.?\s?[Mm]\b\.?)?|(?<![\d:.])(1[0-2]|0?\d)\s?([AaPp])\.?[Mm]\b\.?"
)
_ISO_DATE_RE = re.compile(r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])")
_NUM_DATE_RE = re.compile(r"(?<![\d/.])(\d{1,2})([/.])(\d{1,2})\2(\d{4})(?![\d/]|\.\d)")
_IP_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)")
_VERSION_RE = re.compile(r"(?<![\w.])(v|V|version )?(\d+(?:\.\d+){2,3}|(?<=[vV])\d+(?:\.\d+)?)\b")
_PHONE_RE = re.compile(
    r"(?<![\w.])(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)\s?)?\d{2,4}(?:[\s.-]\d{2,5}){1,3}(?!\w|\.\d)"
)
_RANGE_RE = re.compile(rf"({NUM})\s?[-–]\s?(\d+(?:[.,]\d+)?)(?![\d:])")
_FRACTION_RE = re.compile(r"(?<![\w/.])(\d{1,2})[/⁄]([2-9]|1[0-2])(?![\w/]|\.\d)")
_EMOJI = frozenset({"So", "Cs", "Co", "Cn"})
_JOINERS = "\u200d\ufe0e\ufe0f\u20e3"


def _template(entry: str | tuple[str, str], one: bool) -> str:
    if isinstance(entry, str):
        return entry
    return entry[0] if one else entry[1]


# ---------------------------------------------------------------- stages


def skip_symbols(text: str, language: str) -> str:
    """Emoji and pictographs are not read ("grinning face"): dropped, logged at debug level."""
    kept, skipped = [], []
    for ch in text:
        if ch in _JOINERS or 0x1F3FB <= ord(ch) <= 0x1F3FF:
            skipped.append(ch)
        elif unicodedata.category(ch) in _EMOJI and ch not in "°©®™":
            skipped.append(ch)
            kept.append(" ")
        else:
            kept.append(ch)
    if skipped:
        _LOG.debug("not spoken: %s", " ".join(f"U+{ord(c):04X}" for c in skipped))
    return "".join(kept)


def _money_words(amount: str, code: str, language: str) -> str:
    lang = table(language)
    unit, units, cent, cents = lang.money[code]
    negative, whole, fraction = parse_number(amount, language)
    main = decimal(whole, "", language, negative, "cardinal")
    words = f"{main} {units if not is_one(whole, language) else unit}"
    fraction = (fraction + "0")[:2] if fraction else ""
    if fraction and int(fraction) and cent and not int(whole or "0") and not negative:
        words = f"{spell(int(fraction), language)} {cent if int(fraction) == 1 else cents}"
    elif fraction and int(fraction) and cent:
        small = spell(int(fraction), language)
        word = cent if int(fraction) == 1 else cents
        joint = {"es": "con", "fr": "et", "it": "e", "pt": "e", "hi": "और"}
        words += f" {joint.get(lang_key(language), 'and')} {small} {word}"
    elif fraction and int(fraction):
        words = f"{decimal(whole, fraction, language, negative)} {units}"
    return words.replace(" ", lang.sep) if lang.sep == "" else words


def money(text: str, language: str) -> str:
    """ "$5.99" -> "five dollars and ninety-nine cents", "EUR 5", "3,50 €"."""
    codes = table(language).money
    if not codes:
        return text
    alt = "|".join(re.escape(c) for c in sorted(codes, key=len, reverse=True))
    text = re.sub(
        rf"(?<![\w$])({alt})\s?({NUM})",
        lambda m: _money_words(m[2], m[1], language),
        text,
    )
    return re.sub(rf"({NUM})\s?({alt}){_END}", lambda m: _money_words(m[1], m[2], language), text)


def _ja_counter(n: int, counter: str) -> str:
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


def _english_time(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """US English reads a 24-hour time on the 12-hour clock; British English reads it as is."""
    if half is None and language.lower() != "en-gb" and (h > 12 or h == 0 or zero):
        half, h = ("P" if h >= 12 else "A"), (h % 12 or 12)
    elif half is not None:
        h = h % 12 or 12
    hour = spell(h, "en")
    if m == 0:
        words = f"{hour} hundred" if h > 12 else f"{hour} o'clock" if half is None else hour
    else:
        words = f"{hour} oh {spell(m, 'en')}" if m < 10 else f"{hour} {spell(m, 'en')}"
    return f"{words} {half.upper()} M" if half else words


def time_words(h: int, m: int, half: str | None, language: str, zero: bool = False) -> str:
    """A clock time as the language reads it; ``half`` is "a"/"p" of a 12-hour time."""
    key = lang_key(language)
    if key == "en" or key not in LANGS:
        return _english_time(h, m, half, zero, language)
    if half and half.lower() == "p" and h < 12:
        h += 12
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    simple = {"es": ("{h} y {m}", "{h} en punto"), "it": ("{h} e {m}", "{h} in punto")}
    simple["pt"] = ("{h} e {m}", "{h} horas" if h != 1 else "{h} hora")
    simple["hi"] = ("{h} बजकर {m} मिनट", "{h} बजे")
    if key in simple:
        return simple[key][m == 0].format(h=hour, m=mins)
    if key == "fr":
        return f"{hour} heure{'s' if h > 1 else ''}" + (f" {mins}" if m else "")
    if key == "ja":
        return _ja_counter(h, "じ") + (_ja_counter(m, "ふん") if m else "")
    hour = "两" if h == 2 else hour
    return f"{hour}点" + (f"{'零' if m < 10 else ''}{mins}分" if m else "")


def times(text: str, language: str) -> str:
    """ "6:45 AM", "14:30", "07:15", "6 pm" -> words."""

    def one(m: re.Match[str]) -> str:
        end = "." if m[0].endswith(("m.", "M.")) else ""  # "a.m." may end the sentence too
        if m[5] is not None:
            return time_words(int(m[5]), 0, m[6].lower(), language) + end
        words = time_words(int(m[1]), int(m[2]), m[4] and m[4].lower(), language, m[1][0] == "0")
        if m[3] and int(m[3]):
            sep = table(language).sep
            words += f"{sep}{spell(int(m[3]), language)}{sep}" + (
                "seconds" if lang_key(language) == "en" else ""
            )
        return words + end

    text = re.sub(r"\b(\d{1,2})\.([0-5]\d)\s?(?=[AaPp]\.?[Mm]\b)", r"\1:\2 ", text)  # "7.15am"
    text = _TIME_RE.sub(one, text)
    return re.sub(r"(मिनट|बजे) बजे", r"\1", text) if lang_key(language) == "hi" else text


_JA_DAYS = tuple(
    [
        "ついたち",
        "ふつか",
        "みっか",
        "よっか",
        "いつか",
        "むいか",
        "なのか",
        "ようか",
        "ここのか",
        "とおか",
    ]
)


def date_words(year: int | None, month: int, day: int, language: str) -> str:
    """A calendar date as the language says it (the year optional)."""
    key = lang_key(language)
    key = key if key in LANGS else "en"
    name = table(language).months.split()[month - 1]
    y = spell(year, language, "year") if year is not None else ""
    if key == "en":
        d = spell(day, "en", "ordinal")
        if language.lower() == "en-gb":
            return f"the {d} of {name}" + (f" {y}" if y else "")
        return f"{name} {d}" + (f", {y}" if y else "")
    if key == "ja":
        d = {14: "じゅうよっか", 20: "はつか", 24: "にじゅうよっか"}.get(day)
        d = d or (_JA_DAYS[day - 1] if day <= 10 else spell(day, "ja") + "にち")
        return (f"{y}ねん" if y else "") + name + d
    if key == "zh":
        y = digits(str(year), language) + "年" if year is not None else ""
        return f"{y}{name}{spell(day, language)}日"
    first = {"es": "primero", "fr": "premier", "it": "primo", "pt": "primeiro"}.get(key)
    d = first if day == 1 and first else spell(day, language)
    of = " de " if key in ("es", "pt") else " "
    return f"{d}{of}{name}" + (f"{of}{y}" if y else "")


def _valid(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def dates(text: str, language: str) -> str:
    """ISO and numeric dates (month first in US English, day first elsewhere) -> words."""

    def iso(m: re.Match[str]) -> str:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        return date_words(y, mo, d, language) if _valid(mo, d) else m[0]

    def numeric(m: re.Match[str]) -> str:
        a, b, y = int(m[1]), int(m[3]), int(m[4])
        mo, d = (a, b) if language.lower() == "en-us" else (b, a)
        return date_words(y, mo, d, language) if _valid(mo, d) else m[0]

    return _NUM_DATE_RE.sub(numeric, _ISO_DATE_RE.sub(iso, text))


_EN_MONTH_ABBR = {m[:3]: m for m in LANGS["en"].months.split()} | {"Sept": "September"}
_EN_DAY_ABBR = {d[:3]: d for d in LANGS["en"].weekdays.split()}
_EN_DAY_ABBR.update({"Tues": "Tuesday", "Thur": "Thursday", "Thurs": "Thursday"})
_MONTHS = "|".join(sorted({*_EN_MONTH_ABBR, *_EN_MONTH_ABBR.values()}, key=len, reverse=True))
_EN_MONTH_DAY_RE = re.compile(
    rf"\b({_MONTHS})\.?\s(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s(\d{{4}})\b)?"
)
_EN_DAY_MONTH_RE = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s({_MONTHS})\b\.?(?:\s(\d{{4}})\b)?")


def english_calendar(text: str, language: str) -> str:
    """ "Tue., Mar. 4" -> "Tuesday, March fourth"; "9 Jan 2026"; "Sept. 3rd"."""
    if lang_key(language) != "en":
        return text

    def month_day(m: re.Match[str]) -> str:
        month = _EN_MONTH_ABBR.get(m[1], m[1])
        year = int(m[3]) if m[3] else None
        number = LANGS["en"].months.split().index(month) + 1
        return date_words(year, number, int(m[2]), language) if int(m[2]) <= 31 else m[0]

    def day_month(m: re.Match[str]) -> str:
        month = _EN_MONTH_ABBR.get(m[2], m[2])
        year = int(m[3]) if m[3] else None
        number = LANGS["en"].months.split().index(month) + 1
        return date_words(year, number, int(m[1]), language) if int(m[1]) <= 31 else m[0]

    text = _EN_MONTH_DAY_RE.sub(month_day, text)
    text = _EN_DAY_MONTH_RE.sub(day_month, text)
    days = "|".join(sorted(_EN_DAY_ABBR, key=len, reverse=True))
    text = re.sub(rf"\b({days})\.?(?=,|\s|$)", lambda m: _EN_DAY_ABBR[m[1]], text)
    months = "|".join(sorted(_EN_MONTH_ABBR, key=len, reverse=True))
    return re.sub(rf"\b({months})\.(?=,|\s|$)", lambda m: _EN_MONTH_ABBR[m[1]], text)


def addresses(text: str, language: str) -> str:
    """IP addresses, version strings and phone numbers, read in parts."""
    sep = table(language).sep
    dot = {"en": "dot", "zh": "点", "ja": "てん"}.get(lang_key(language), table(language).point)

    def part(p: str) -> str:
        return digits(p, language) if len(p) == 3 else spell(int(p), language)

    text = _IP_RE.sub(lambda m: f"{sep}{dot}{sep}".join(part(p) for p in m[0].split(".")), text)

    def version(m: re.Match[str]) -> str:
        said = f"{sep}{table(language).point}{sep}".join(
            decimal(p, "", language) for p in m[2].split(".")
        )
        return ("version " if m[1] and lang_key(language) == "en" else "") + said

    text = _VERSION_RE.sub(version, text)

    def phone(m: re.Match[str]) -> str:
        raw = m[0]
        if sum(c.isdigit() for c in raw) < 7 or not re.search(r"[-(+]", raw):
            return raw
        groups = re.findall(r"\d+", raw)
        plus = "plus " if raw.startswith("+") and lang_key(language) == "en" else ""
        return plus + ", ".join(digits(g, language) for g in groups)

    return _PHONE_RE.sub(phone, text)


def ranges(text: str, language: str) -> str:
    """ "3-5", "10-20 °C" -> "3 to 5" (the numbers and unit are read by later stages)."""
    template = table(language).range
    return _RANGE_RE.sub(lambda m: template.format(a=m[1], b=m[2]), text)


def units(text: str, language: str) -> str:
    """A number and its unit -> words, singular or plural: "2 min", "19.5 °C", "52%"."""
    lang = table(language)
    english = LANGS["en"].units

    def one(m: re.Match[str]) -> str:
        unit = re.sub(r"°\s", "°", m[2])
        if unit == "min" and lang_key(language) == "ja" and m[1].isdigit() and len(m[1]) < 4:
            return _ja_counter(int(m[1]), "ふん")  # "ごふん", "じゅっぷん": sound changes
        entry = lang.units.get(unit) or english.get(unit)
        after = text[m.end() : m.end() + 2]
        if entry is None or (unit in _AMBIGUOUS_UNITS and re.match(r"\s?[^\W\d]", after)):
            return m[0]
        if unit not in lang.units and lang_key(language) != "en":
            return f"{number_words(m[1], language)} {unit}"
        template = _template(entry, is_one(m[1], language))
        # the form before a noun: "un grado", "una hora" ("{f}": a feminine noun)
        words = number_words(m[1], language, "cardinal", feminine="{f}" in template)
        return template.format(n=words, f=words)

    return _UNIT_RE.sub(one, text)


def percents(text: str, language: str) -> str:
    """Any "%" left after a number ("52 %" with an odd space, "-3%")."""
    template = table(language).percent
    return re.sub(rf"({NUM})\s?%", lambda m: template.format(n=number_words(m[1], language)), text)


def ordinals(text: str, language: str) -> str:
    """ "21st" -> "twenty-first"; "1er" / "2e" (French); "1º" / "1ª" (es, it, pt)."""
    key = lang_key(language)
    if key == "en":
        pattern, fem = r"\b(\d+)(st|nd|rd|th)\b", None
    elif key == "fr":
        pattern, fem = r"\b(\d+)(er|re|e|ème|eme)\b", "re"
    elif key in ("es", "it", "pt"):
        pattern, fem = r"\b(\d+)\.?([ºªoa])(?!\w)", "ªa"
    else:
        return text

    def one(m: re.Match[str]) -> str:
        if len(m[1]) > MAX_CARDINAL_DIGITS:
            return digits(m[1], language)
        feminine = bool(fem) and m[2] in fem
        return spell(int(m[1]), language, "ordinal", feminine=feminine)

    return re.sub(pattern, one, text)


def fractions(text: str, language: str) -> str:
    """ "1/2" -> "one half", "3/4" -> "three quarters" (English)."""
    if lang_key(language) != "en":
        return text

    def one(m: re.Match[str]) -> str:
        a, b = int(m[1]), int(m[2])
        if a >= b:
            return m[0]  # "24/7", "3/2": a ratio (see ``ratios``), not a part of a whole
        name = {2: "half", 4: "quarter"}.get(b) or spell(b, "en", "ordinal")
        if a != 1:
            name = "halves" if b == 2 else name + "s"
        return f"{spell(a, 'en')} {name}"

    return _FRACTION_RE.sub(one, text)


def words(text: str, language: str) -> str:
    """Abbreviations and symbols from the language's table ("Dr.", "approx.", "&", "@")."""
    table_words = table(language).words
    if lang_key(language) == "en":
        text = re.sub(r"\bSt\.(?=\s[A-Z])", "Saint", text)
        text = re.sub(r"\bSt\.", "Street", text)
        text = re.sub(r"\bDr\.(?!\s[A-Z])", "Drive", text)
        # British style and Whisper write titles without the period ("Ms Jones"): espeak-ng
        # spells "Ms" as two letters; a title is one before a name
        text = re.sub(
            r"\b(Mr|Mrs|Ms|Dr|Prof)\b(?!\.)(?=\s+(?:[A-Z]|and\s+M|&))",
            lambda m: table_words[m[1] + "."],
            text,
        )
        text = re.sub(r"#(?=\s?\d)", " number ", text)
        text = re.sub(r"(\w)@(\w)", r"\1 at \2", text)
        text = re.sub(r"(\w)\.(com|org|net|io|de|uk)\b", r"\1 dot \2", text)
    for short, long in table_words.items():
        if short[-1] == "." or short[0].isalpha():
            text = re.sub(rf"(?<!\w){re.escape(short)}(?!\w)", long, text)
        else:
            text = text.replace(short, f" {long} ")
    return text


def letters_and_digits(text: str, language: str) -> str:
    """ "PM2.5" -> "P M 2.5", "CO2" -> "C O 2": a short capital acronym glued to a number."""
    return re.sub(r"\b([A-Z]{1,4})(\d+(?:\.\d+)?)\b", lambda m: " ".join(m[1]) + " " + m[2], text)


def numbers(text: str, language: str) -> str:
    """Every number left -> words."""
    return re.sub(NUM, lambda m: f"{number_words(m[0], language)}", text)


# ---------------------------------------------------------------- forms of written replies

# "per" between a price or unit and the unit it is counted in ("$0.32/kWh", "€/month").
_PER = {"en": "per", "es": "por", "fr": "par", "it": "per", "pt": "por", "hi": "प्रति"}
# Nouns a price or quantity is counted per, besides the unit symbols: word or abbreviation ->
# the word (English; other languages' own nouns are read as written).
_EN_PER_NOUNS = {
    **{w: w for w in ("month", "day", "week", "year", "night", "person", "hour", "minute")},
    **{"mo": "month", "yr": "year", "wk": "week", "pc": "piece", "unit": "unit"},
}
_CURRENCY_SYMBOLS = "$€£¥₹"


def _unit_word(entry: str | tuple[str, str], one: bool) -> str:
    """A unit's words without the number: ("{n} watt", "{n} watts") -> "watt"."""
    return re.sub(r"\{[nf]\}\s?", "", _template(entry, one)).strip()


@lru_cache(maxsize=16)
def _per_re(key: str) -> re.Pattern[str]:
    lang = LANGS[key]
    units = {**(LANGS["en"].units if key == "en" else {}), **lang.units}
    singles = sorted((u for u in units if "/" not in u and u != "%"), key=len, reverse=True)
    unit = "|".join(re.escape(u) for u in singles)
    cur = "|".join(re.escape(c) for c in sorted(lang.money, key=len, reverse=True)) or "(?!)"
    right = "|".join(sorted({*singles, *(_EN_PER_NOUNS if key == "en" else ())}, key=len)[::-1])
    left = rf"(?:(?:{cur})\s?{NUM}|(?:{NUM}\s?)?(?:{cur}|{unit}))"
    return re.compile(rf"(?<![\w/])({left})\s?/\s?({right})(?![\w/])")


def per_unit(text: str, language: str) -> str:
    """ "$0.32/kWh" -> "$0.32 per kilowatt hour", "ct/kWh" -> "cents per kilowatt hour",
    "€/month"; a unit of its own ("km/h", "m/s") is left to ``units``."""
    key = lang_key(language)
    if "/" not in text or key not in _PER:
        return text
    lang = table(language)
    units = {**(LANGS["en"].units if key == "en" else {}), **lang.units}

    def one(m: re.Match[str]) -> str:
        left, right = m[1], m[2]
        symbol = re.sub(rf"^{NUM}\s?|\s?{NUM}$", "", left)
        if f"{symbol}/{right}" in units:
            return m[0]
        per = units.get(right)
        noun = _unit_word(per, True) if per else _EN_PER_NOUNS.get(right, right)
        if symbol == left:  # no amount: "€/kWh" -> "euros per kilowatt hour"
            if symbol in lang.money:
                left = lang.money[symbol][1]
            elif symbol in units:
                left = _unit_word(units[symbol], False)
        return f"{left} {_PER[key]} {noun}"

    return _per_re(key).sub(one, text)


_RATIO_RE = re.compile(r"(?<![\w/.,])(\d{1,3})/(\d{1,3})(?![\w/]|[.,]\d)")


def ratios(text: str, language: str) -> str:
    """ "50/50" -> "50 50" ("fifty fifty"), "24/7", "60/40": two numbers that are no fraction
    (fractions are read first) and no date."""
    if table(language).sep == "":
        return text
    return _RATIO_RE.sub(lambda m: f"{m[1]} {m[2]}", text)


# Top-level domains read as words; others of two letters are spelled ("io" -> "I O").
_TLD_WORDS = frozenset({"com", "org", "net", "edu", "gov", "info", "app", "dev", "shop", "home"})
_TLDS = "com|org|net|edu|gov|info|app|dev|io|ai|de|uk|fr|es|it|nl|eu|ch|at|be|co|tv|me|us|local"
_HOST = rf"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?:{_TLDS}|[a-z]{{2,6}}(?=[/:]))"
# a path segment does not end with the sentence's punctuation ("/docs/." ends at "docs")
_SEGMENTS = r"((?:/[^\s/?#<>()\[\]]*[^\s/?#<>()\[\].,;:!'\"])*)"
_URL_RE = re.compile(
    rf"\b(?:https?://|www\.)+({_HOST})(?::(\d{{2,5}}))?{_SEGMENTS}/?(?:[?#][^\s<>()]*)?"
    rf"|(?<![\w@./-])({_HOST})\b(?![\w@-]|\.\w)(?::(\d{{2,5}}))?{_SEGMENTS}"
)
_EMAIL_RE = re.compile(rf"(?<![\w.+-])([\w.+-]+)@({_HOST})\b")
_PATH_RE = re.compile(r"(?<![\w/:.$€£¥%)\]-])/((?:[A-Za-z0-9_.-]*[A-Za-z][A-Za-z0-9_.-]*/?)+)")


def _dot(language: str) -> str:
    return {"en": "dot", "zh": "点", "ja": "ドット"}.get(lang_key(language), "punto")


def _host_words(host: str, language: str) -> str:
    """ "www.home-assistant.io" -> "home assistant dot I O"."""
    labels = host.lower().removeprefix("www.").split(".")
    if len(labels[-1]) <= 2 and labels[-1] not in _TLD_WORDS:
        labels[-1] = " ".join(labels[-1].upper())
    return f" {_dot(language)} ".join(label.replace("-", " ") for label in labels)


def _path_words(path: str) -> str:
    """ "/config/automations" -> "config, automations": a listener needs the places, a pause
    between them is the separator (a spoken "slash" for each says nothing more)."""
    parts = [p.replace("_", " ").replace("-", " ") for p in path.split("/") if p]
    return ", ".join(parts)


def addresses_of_the_web(text: str, language: str) -> str:
    """URLs, e-mail addresses and paths as a person reads them: no scheme, "dot", no slashes."""
    if "/" not in text and "@" not in text and "." not in text:
        return text
    at = {"en": "at", "es": "arroba", "fr": "arobase", "it": "chiocciola", "pt": "arroba"}

    def email(m: re.Match[str]) -> str:
        local = m[1].replace(".", f" {_dot(language)} ")
        return f"{local} {at.get(lang_key(language), 'at')} {_host_words(m[2], language)}"

    def url(m: re.Match[str]) -> str:
        host, port, path = (m[1], m[2], m[3]) if m[1] else (m[4], m[5], m[6])
        words = _host_words(host, language)
        if port:
            words += ", port " if lang_key(language) == "en" else ", "
            words += digits(port, language)
        return f"{words}, {_path_words(path)}" if path and _path_words(path) else words

    text = _EMAIL_RE.sub(email, text)
    text = _URL_RE.sub(url, text)
    return _PATH_RE.sub(lambda m: _path_words(m[1]), text)


_CODE_RE = re.compile(r"(?<![\w.,-])\d{1,4}(?:-\d{1,4}){2,}(?![\w-]|[.,]\d)")


def digit_codes(text: str, language: str) -> str:
    """ "4-2-7-1" -> "four two seven one": three or more digit groups joined by hyphens are a
    code (dates and phone numbers are read first), never a chain of ranges."""

    def one(m: re.Match[str]) -> str:
        groups = m[0].split("-")
        if all(len(g) == 1 for g in groups):
            return digits("".join(groups), language)
        return ", ".join(digits(g, language) for g in groups)

    return _CODE_RE.sub(one, text)


_COMPASS = {
    "N": "north", "NNE": "north-northeast", "NE": "northeast", "ENE": "east-northeast",
    "E": "east", "ESE": "east-southeast", "SE": "southeast", "SSE": "south-southeast",
    "S": "south", "SSW": "south-southwest", "SW": "southwest", "WSW": "west-southwest",
    "W": "west", "WNW": "west-northwest", "NW": "northwest", "NNW": "north-northwest",
}  # fmt: skip
_POINTS = "|".join(sorted(_COMPASS, key=len, reverse=True))
_WIND_RE = re.compile(
    r"\b(?:wind|winds|windy|gusts?|gusting|breeze|blowing|direction|heading)\b", re.I
)
_COMPASS_RE = re.compile(rf"(?<!\d )(?<![\w.])({_POINTS})(?![\w.]|\.\w)")
_FROM_POINT_RE = re.compile(rf"\b((?:from|to|towards) (?:the )?)({_POINTS})\b(?!\.\w)")


def compass(text: str, language: str) -> str:
    """ "NW", "SSE" -> "northwest", "south-southeast" where a wind or direction is spoken of
    (English): after "from"/"to the", or anywhere in a sentence about wind; a letter after a
    number stays a unit ("5 W")."""
    if lang_key(language) != "en":
        return text
    text = _FROM_POINT_RE.sub(lambda m: m[1] + _COMPASS[m[2]], text)
    if not _WIND_RE.search(text):
        return text
    return _COMPASS_RE.sub(lambda m: _COMPASS[m[1]] if len(m[1]) > 1 else m[0], text)


_LESS_MORE = {
    "en": ("less than", "more than"),
    "es": ("menos de", "más de"),
    "fr": ("moins de", "plus de"),
    "it": ("meno di", "più di"),
    "pt": ("menos de", "mais de"),
}


def signs(text: str, language: str) -> str:
    """Marks a reply uses: "< 5", "> 20" -> "less/more than"; arrows and "Settings > Devices"
    (a path through menus) -> a pause; "5 * 3" -> "times"; "*", "_", "`", "|" and a hashtag's
    "#" that Markdown left are not read."""
    less, more = _LESS_MORE.get(lang_key(language), ("<", ">"))
    text = re.sub(r"\s*(?:->|=>|→|⇒|➜)\s*", ", ", text)
    text = re.sub(r"(?<=\w) > (?=[A-Za-z])", ", ", text)
    text = re.sub(r"(?<![<>=-])<\s?(?=[-−]?\d)", f" {less} ", text)
    text = re.sub(r"(?<![<>=-])>\s?(?=[-−]?\d)", f" {more} ", text)
    text = re.sub(r"(?<=\d)\s?\*\s?(?=\d)", " × ", text)
    text = re.sub(r"(?<=[^\W_])_+(?=[^\W_])", " ", text)
    text = re.sub(r"#(?!\s?\d)", " ", text)
    text = re.sub(r"\s*\|\s*", ", ", text)
    return re.sub(r"[*_`]+", " ", text)


def slashes(text: str, language: str) -> str:
    """ "on/off" -> "on or off"; other slashes between words are read."""
    if lang_key(language) != "en":
        return text
    text = re.sub(r"\b([a-z]+)/([a-z]+)\b", r"\1 or \2", text)
    return re.sub(r"(\w)\s?/\s?(\w)", r"\1 slash \2", text)


def tidy(text: str, language: str) -> str:
    """Collapse spaces, none before closing punctuation."""
    text = " ".join(text.split())
    return re.sub(r"\s+([,.;:!?…)])", r"\1", text)


STAGES: list[Stage] = [
    skip_symbols,
    addresses_of_the_web,
    signs,
    compass,
    letters_and_digits,
    per_unit,
    money,
    english_calendar,
    dates,
    times,
    addresses,
    digit_codes,
    ranges,
    units,
    percents,
    ordinals,
    fractions,
    ratios,
    words,
    numbers,
    slashes,
    tidy,
]


def speakable(text: str, language: str) -> str:
    """Text -> the words to say, for the espeak-ng ``language`` the text is phonemized with."""
    text = unicodedata.normalize("NFKC", text)
    for stage in STAGES:
        text = stage(text, language)
    return text
