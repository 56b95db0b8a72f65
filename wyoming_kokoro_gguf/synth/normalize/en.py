"""English: words, units, and the rules only English has (calendar abbreviations, compass
points, fractions, "on/off", titles without a period, US and British clocks and dates)."""

from __future__ import annotations

import re

from wyoming_kokoro_gguf.synth.normalize.core import Lang, register, spell

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

_MONTH_NAMES = (
    "January February March April May June July August September October November December"
)
_DAY_NAMES = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
# Nouns a price or quantity is counted per, besides the unit symbols: word or abbreviation ->
# the word ("$20/month", "€5/mo").
_PER_NOUNS = {
    **{w: w for w in ("month", "day", "week", "year", "night", "person", "hour", "minute")},
    **{"mo": "month", "yr": "year", "wk": "week", "pc": "piece", "unit": "unit"},
}


def _british_and(words: str, language: str, purpose: str) -> str:
    """British English says "one hundred and one", "two thousand and six"."""
    if language.lower() != "en-gb" or purpose not in ("cardinal", "numbering"):
        return words
    big = r"(?:thousand|million|billion|trillion)"
    words = re.sub(rf"\bhundred (?!{big}\b)", "hundred and ", words)
    return re.sub(rf"\b({big}) ((?:\w+-)?\w+)$", r"\1 and \2", words)


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
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


def _date(year: int | None, month: int, day: int, language: str) -> str:
    """ "March fourth, 2026" (US), "the fourth of March 2026" (British)."""
    name = _MONTH_NAMES.split()[month - 1]
    y = spell(year, language, "year") if year is not None else ""
    d = spell(day, "en", "ordinal")
    if language.lower() == "en-gb":
        return f"the {d} of {name}" + (f" {y}" if y else "")
    return f"{name} {d}" + (f", {y}" if y else "")


_MONTH_ABBR = {m[:3]: m for m in _MONTH_NAMES.split()} | {"Sept": "September"}
_DAY_ABBR = {d[:3]: d for d in _DAY_NAMES.split()}
_DAY_ABBR.update({"Tues": "Tuesday", "Thur": "Thursday", "Thurs": "Thursday"})
_MONTHS = "|".join(sorted({*_MONTH_ABBR, *_MONTH_ABBR.values()}, key=len, reverse=True))
_MONTH_DAY_RE = re.compile(rf"\b({_MONTHS})\.?\s(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s(\d{{4}})\b)?")
# "on 3/15", "until 12/2", "Friday 4/3": a year-less date after a word that announces one
# ("by 1/2", "from 1/2 to 3/4 cup" and "on 3/4 of them" stay fractions).
_CUED_DATE_RE = re.compile(
    rf"\b((?:on|until|till|since|due|{'|'.join(_DAY_NAMES.split())}),? )"
    r"(\d{1,2})/(\d{1,2})(?![\d/]|[.,]\d| of\b)",
    re.I,
)
_DAY_MONTH_RE = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s({_MONTHS})\b\.?(?:\s(\d{{4}})\b)?")


def calendar(text: str, language: str) -> str:
    """ "Tue., Mar. 4" -> "Tuesday, March fourth"; "9 Jan 2026"; "Sept. 3rd"."""

    def month_day(m: re.Match[str]) -> str:
        month = _MONTH_ABBR.get(m[1], m[1])
        year = int(m[3]) if m[3] else None
        number = _MONTH_NAMES.split().index(month) + 1
        return _date(year, number, int(m[2]), language) if int(m[2]) <= 31 else m[0]

    def day_month(m: re.Match[str]) -> str:
        month = _MONTH_ABBR.get(m[2], m[2])
        year = int(m[3]) if m[3] else None
        number = _MONTH_NAMES.split().index(month) + 1
        return _date(year, number, int(m[1]), language) if int(m[1]) <= 31 else m[0]

    text = _MONTH_DAY_RE.sub(month_day, text)
    text = _DAY_MONTH_RE.sub(day_month, text)

    def cued(m: re.Match[str]) -> str:
        a, b = int(m[2]), int(m[3])
        month, day = (b, a) if language.lower() == "en-gb" else (a, b)
        valid = 1 <= month <= 12 and 1 <= day <= 31
        return m[1] + _date(None, month, day, language) if valid else m[0]

    text = _CUED_DATE_RE.sub(cued, text)
    days = "|".join(sorted(_DAY_ABBR, key=len, reverse=True))
    text = re.sub(rf"\b({days})\.?(?=,|\s|$)", lambda m: _DAY_ABBR[m[1]], text)
    months = "|".join(sorted(_MONTH_ABBR, key=len, reverse=True))
    return re.sub(rf"\b({months})\.(?=,|\s|$)", lambda m: _MONTH_ABBR[m[1]], text)


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
    """ "NW", "SSE" -> "northwest", "south-southeast" where a wind or direction is spoken of:
    after "from"/"to the", or anywhere in a sentence about wind; a letter after a number stays
    a unit ("5 W")."""
    text = _FROM_POINT_RE.sub(lambda m: m[1] + _COMPASS[m[2]], text)
    if not _WIND_RE.search(text):
        return text
    return _COMPASS_RE.sub(lambda m: _COMPASS[m[1]] if len(m[1]) > 1 else m[0], text)


_FRACTION_RE = re.compile(r"(?<![\w/.])(\d{1,2})[/⁄]([2-9]|1[0-2])(?![\w/]|\.\d)")


def fractions(text: str, language: str) -> str:
    """ "1/2" -> "one half", "3/4" -> "three quarters"."""

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
    """ "St.", "Dr." by what follows, titles without a period, "#5", "a@b", "x.com"."""
    text = re.sub(r"\bSt\.(?=\s[A-Z])", "Saint", text)
    text = re.sub(r"\bSt\.", "Street", text)
    text = re.sub(r"\bDr\.(?!\s[A-Z])", "Drive", text)
    # British style and Whisper write titles without the period ("Ms Jones"): espeak-ng
    # spells "Ms" as two letters; a title is one before a name
    text = re.sub(
        r"\b(Mr|Mrs|Ms|Dr|Prof)\b(?!\.)(?=\s+(?:[A-Z]|and\s+M|&))",
        lambda m: _EN_WORDS[m[1] + "."],
        text,
    )
    text = re.sub(r"#(?=\s?\d)", " number ", text)
    text = re.sub(r"(\w)@(\w)", r"\1 at \2", text)
    return re.sub(r"(\w)\.(com|org|net|io|de|uk)\b", r"\1 dot \2", text)


def slashes(text: str, language: str) -> str:
    """ "on/off" -> "on or off"; other slashes between words are read."""
    text = re.sub(r"\band/or\b", "and or", text)
    text = re.sub(r"\b([a-z]+)/([a-z]+)\b", r"\1 or \2", text)
    return re.sub(r"(\w)\s?/\s?(\w)", r"\1 slash \2", text)


register(
    "en",
    Lang(
        "point",
        "minus",
        "{n} percent",
        "{a} to {b}",
        _MONTH_NAMES,
        _DAY_NAMES,
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
        says={
            **{"dot": "dot", "ip dot": "dot", "at": "at", "per": "per", "and": "and"},
            **{"less": "less than", "more": "more than", "version": "version ", "plus": "plus "},
            **{"port": "port", "seconds": "seconds"},
            "remaining": "remaining|left|elapsed|to go",  # after a timer's "1:30:00"
        },
        rules={
            "calendar": calendar,
            "compass": compass,
            "fractions": fractions,
            "words": words,
            "slashes": slashes,
        },
        clock=_clock,
        date=_date,
        ordinal=(r"\b(\d+)(st|nd|rd|th)\b", ""),
        per_nouns=_PER_NOUNS,
        decimal_point=True,
        year_form=True,
        respell=_british_and,
    ),
)
