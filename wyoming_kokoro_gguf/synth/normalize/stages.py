"""The stages every language goes through, in order (``STAGES``): each finds one kind of
written thing (a URL, a price, a date, a number and its unit...) and writes it out in words.

Why one list for all languages: the shapes are shared ("19.5 °C", "2026-12-02"), the words are
not; each stage asks the language's ``Lang`` (``core.py``, filled by its module) for them, and
``language_rules`` runs a language's own rules at their place in the list.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

from wyoming_kokoro_gguf.synth.normalize.core import (
    LANGS,
    MAX_CARDINAL_DIGITS,
    Stage,
    decimal,
    digits,
    hour_24,
    is_one,
    lang_key,
    number_words,
    own,
    parse_number,
    says,
    spell,
    table,
    template,
)

_LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------- patterns

# A written number: digits with group separators and a decimal part ("1,234.5", "19,5").
# Not inside a Latin word ("PM2.5" is split first), but right after kana or hanzi ("は19.5").
NUM = r"(?<![0-9A-Za-zÀ-ÿ.,])(?:(?<![\d])[-−])?\d+(?:[,.\u202f]\d+)*"
_END = r"(?![0-9A-Za-zÀ-ÿ/°])"
# Units that are also words or letters ("5 in the box", "plan 2 A") need no word after them.
_AMBIGUOUS_UNITS = {"in", "A", "K", "d"}
_TIME_RE = re.compile(
    r"(?<![\d:.])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:])"
    r"(?:\s?([AaPp])\.?\s?[Mm]\b\.?)?|(?<![\d:.])(1[0-2]|0?\d)\s?([AaPp])\.?[Mm]\b\.?"
)
# "7h30", "14h" or "7 h 30": how French and Brazilian Portuguese write a clock time.
_H_CLOCK_RE = re.compile(r"(?<![\w.,])([01]?\d|2[0-3])\s?h(?:\s?([0-5]\d))?(?!\w)")
_ISO_DATE_RE = re.compile(r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])")
_NUM_DATE_RE = re.compile(r"(?<![\d/.])(\d{1,2})([/.])(\d{1,2})\2(\d{4})(?![\d/]|\.\d)")
# A date without its year, "07/04" or "12/02": a zero-led part says it is not a fraction.
_SHORT_DATE_RE = re.compile(r"(?<![\d/.,])(\d{1,2})/(\d{1,2})(?![\d/]|[.,]\d)")
_IP_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)")
_VERSION_RE = re.compile(r"(?<![\w.])(v|V|version )?(\d+(?:\.\d+){2,3}|(?<=[vV])\d+(?:\.\d+)?)\b")
_PHONE_RE = re.compile(
    r"(?<![\w.])(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)\s?)?\d{2,4}(?:[\s.-]\d{2,5}){1,3}(?!\w|\.\d)"
)
_RANGE_RE = re.compile(rf"({NUM})\s?[-–]\s?(\d+(?:[.,]\d+)?)(?![\d:])")
_EMOJI = frozenset({"So", "Cs", "Co", "Cn"})
_JOINERS = "\u200d\ufe0e\ufe0f\u20e3"


@lru_cache(maxsize=4)
def _unit_re(keys: tuple[str, ...]) -> re.Pattern[str]:
    """A number and a unit symbol of any language (``keys``: the languages registered)."""
    symbols = sorted({u for key in keys for u in LANGS[key].units}, key=len, reverse=True)
    return re.compile(rf"({NUM})\s?(°\s?[CF]|{'|'.join(re.escape(u) for u in symbols)}){_END}")


def _own_rule(place: str, text: str, language: str) -> str:
    """The language's own rule for ``place`` (``Lang.rules``) applied, if it has one."""
    lang = own(language)
    rule = lang.rules.get(place) if lang else None
    return rule(text, language) if rule else text


def language_rules(place: str) -> Stage:
    """A stage that runs each language's own rule for ``place`` (English: "calendar"...)."""

    def stage(text: str, language: str) -> str:
        return _own_rule(place, text, language)

    stage.__name__ = stage.__qualname__ = place
    return stage


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
        words += f" {says(language, 'and', 'and')} {small} {word}"
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


def time_words(h: int, m: int, half: str | None, language: str, zero: bool = False) -> str:
    """A clock time as the language reads it; ``half`` is "a"/"p" of a 12-hour time."""
    lang = table(language)
    if lang.clock is not None:
        return lang.clock(h, m, half, zero, language)
    h = hour_24(h, half)  # a language without its own clock words: hour and minutes
    return lang.sep.join([spell(h, language), spell(m, language)]) if m else spell(h, language)


# "2-4 pm": both hours take the "pm" (the range is read as one, "two to four P M").
_HOUR_RANGE_RE = re.compile(
    r"(?<![\d:.])(1[0-2]|0?\d)\s?[-–]\s?(1[0-2]|0?\d)\s?(?=[AaPp]\.?[Mm]\b)"
)
# "9am-5pm", "9:30 a.m. – 5 p.m.": a range of two 12-hour times.
_HALF = r"\d{1,2}(?::[0-5]\d)?\s?[AaPp]\.?[Mm]\b\.?"
_TIMES_RANGE_RE = re.compile(rf"(?<![\d:.])({_HALF})\s?[-–]\s?(?={_HALF})")
# After "a.m.", what says its period ends the sentence: the piece's end or a new sentence.
_SENTENCE_AFTER = re.compile(r"\s*(?:$|[\"'”’)\]]*\s*$|[A-Z])")


def _duration(m: re.Match[str], language: str) -> str | None:
    """ "00:05:30", or "1:30:00 remaining": a timer's hours, minutes and seconds, written for
    the units stage ("5 min 30 s"); None where the time is a clock's or the language has no
    such units."""
    after = says(language, "remaining")
    counting = int(m[1]) == 0 or (after and re.match(rf"\s+(?:{after})\b", m.string[m.end() :]))
    units = table(language).units
    if not (m[3] and not m[4] and counting and {"h", "min", "s"} <= units.keys()):
        return None
    parts = zip((m[1], m[2], m[3]), ("h", "min", "s"), strict=True)
    return " ".join(f"{int(n)} {unit}" for n, unit in parts if int(n)) or "0 s"


def times(text: str, language: str) -> str:
    """ "6:45 AM", "14:30", "07:15", "6 pm" -> words; "00:05:30" (a timer) -> a duration."""

    def one(m: re.Match[str]) -> str:
        ends = m[0].endswith(("m.", "M.")) and _SENTENCE_AFTER.match(m.string, m.end())
        end = "." if ends else ""  # "a.m." may end the sentence too, "9 a.m. to 5" not
        if m[5] is not None:
            return time_words(int(m[5]), 0, m[6].lower(), language) + end
        duration = _duration(m, language)
        if duration is not None:
            return duration
        words = time_words(int(m[1]), int(m[2]), m[4] and m[4].lower(), language, m[1][0] == "0")
        if m[3] and int(m[3]):
            sep = table(language).sep
            words += f"{sep}{spell(int(m[3]), language)}{sep}" + says(language, "seconds")
        return words + end

    text = re.sub(r"\b(\d{1,2})\.([0-5]\d)\s?(?=[AaPp]\.?[Mm]\b)", r"\1:\2 ", text)  # "7.15am"
    span = table(language).range
    text = _HOUR_RANGE_RE.sub(lambda m: span.format(a=m[1], b=m[2]) + " ", text)
    text = _TIMES_RANGE_RE.sub(lambda m: span.format(a=m[1], b="").rstrip() + " ", text)
    text = _TIME_RE.sub(one, text)
    if table(language).h_clock:
        text = _H_CLOCK_RE.sub(lambda m: _h_clock(m, language), text)
    return _own_rule("times", text, language)


def _h_clock(m: re.Match[str], language: str) -> str:
    """ "7h30", "14h", "7 h 30" as a clock time; a lone "2 h" is left to the units (a duration,
    "deux heures": the same words)."""
    if m[2] is None and " " in m[0]:
        return m[0]
    return time_words(int(m[1]), int(m[2] or 0), None, language)


def date_words(year: int | None, month: int, day: int, language: str) -> str:
    """A calendar date as the language says it (the year optional)."""
    lang = table(language)
    if lang.date is not None:
        return lang.date(year, month, day, language)
    name = lang.months.split()[month - 1]
    y = spell(year, language, "year") if year is not None else ""
    first = says(language, "first")
    d = first if day == 1 and first else spell(day, language)
    of = f" {says(language, 'of')} " if says(language, "of") else " "
    return f"{d}{of}{name}" + (f"{of}{y}" if y else "")


def _valid(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def dates(text: str, language: str) -> str:
    """ISO and numeric dates (month first in US English, day first elsewhere) -> words."""

    def iso(m: re.Match[str]) -> str:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        return date_words(y, mo, d, language) if _valid(mo, d) else m[0]

    def numeric(m: re.Match[str]) -> str:
        return numeric_date(int(m[1]), int(m[3]), int(m[4]), language) or m[0]

    def short(m: re.Match[str]) -> str:
        if not any(len(p) == 2 and p[0] == "0" for p in (m[1], m[2])):
            return m[0]
        return numeric_date(int(m[1]), int(m[2]), None, language) or m[0]

    text = _NUM_DATE_RE.sub(numeric, _ISO_DATE_RE.sub(iso, text))
    return _SHORT_DATE_RE.sub(short, text)


def numeric_date(a: int, b: int, year: int | None, language: str) -> str | None:
    """A date written in numbers, month first in US English and day first elsewhere, in
    words; None when it is no date."""
    month, day = (a, b) if language.lower() == "en-us" else (b, a)
    return date_words(year, month, day, language) if _valid(month, day) else None


def addresses(text: str, language: str) -> str:
    """IP addresses, version strings and phone numbers, read in parts."""
    sep = table(language).sep
    dot = says(language, "ip dot") or table(language).point

    def part(p: str) -> str:
        # an address part is a number said alone ("uno", not "un" as before a noun)
        return digits(p, language) if len(p) == 3 else spell(int(p), language, "numbering")

    text = _IP_RE.sub(lambda m: f"{sep}{dot}{sep}".join(part(p) for p in m[0].split(".")), text)

    def version(m: re.Match[str]) -> str:
        said = f"{sep}{table(language).point}{sep}".join(
            decimal(p, "", language) for p in m[2].split(".")
        )
        return (says(language, "version") if m[1] else "") + said

    text = _VERSION_RE.sub(version, text)

    def phone(m: re.Match[str]) -> str:
        raw = m[0]
        if sum(c.isdigit() for c in raw) < 7 or not re.search(r"[-(+]", raw):
            return raw
        groups = re.findall(r"\d+", raw)
        plus = says(language, "plus") if raw.startswith("+") else ""
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
    counters = own_lang.counters if (own_lang := own(language)) else {}

    def one(m: re.Match[str]) -> str:
        unit = re.sub(r"°\s", "°", m[2])
        if unit in counters and m[1].isdigit() and len(m[1]) < 4:
            return counters[unit](int(m[1]))  # Japanese counters change their sound
        entry = lang.units.get(unit) or english.get(unit)
        after = text[m.end() : m.end() + 2]
        if entry is None or (unit in _AMBIGUOUS_UNITS and re.match(r"\s?[^\W\d]", after)):
            return m[0]
        if unit not in lang.units:  # an English unit in another language's text
            return f"{number_words(m[1], language)} {unit}"
        form = template(entry, is_one(m[1], language))
        # the form before a noun: "un grado", "una hora" ("{f}": a feminine noun)
        words = number_words(m[1], language, "cardinal", feminine="{f}" in form)
        return form.format(n=words, f=words)

    return _unit_re(tuple(LANGS)).sub(one, text)


def percents(text: str, language: str) -> str:
    """Any "%" left after a number ("52 %" with an odd space, "-3%")."""
    template = table(language).percent
    return re.sub(rf"({NUM})\s?%", lambda m: template.format(n=number_words(m[1], language)), text)


def ordinals(text: str, language: str) -> str:
    """ "21st" -> "twenty-first"; "1er" / "2e" (French); "1º" / "1ª" (es, it, pt): the
    language's ``Lang.ordinal`` pattern."""
    lang = own(language)
    if lang is None or lang.ordinal is None:
        return text
    pattern, fem = lang.ordinal

    def one(m: re.Match[str]) -> str:
        if len(m[1]) > MAX_CARDINAL_DIGITS:
            return digits(m[1], language)
        feminine = bool(fem) and m[2] in fem
        return spell(int(m[1]), language, "ordinal", feminine=feminine)

    return re.sub(pattern, one, text)


def words(text: str, language: str) -> str:
    """Abbreviations and symbols from the language's table ("Dr.", "approx.", "&", "@")."""
    table_words = table(language).words
    text = _own_rule("words", text, language)
    for short, long in table_words.items():
        if short[-1] == "." or short[0].isalpha():
            text = re.sub(rf"(?<!\w){re.escape(short)}(?!\w)", long, text)
        else:
            text = text.replace(short, f" {long} ")
    return text


_LETTER_CODE_RE = re.compile(r"\b([A-Z]{1,4})(\d+(?:-\d+)+)\b")


def letters_and_digits(text: str, language: str) -> str:
    """ "PM2.5" -> "P M 2.5", "CO2" -> "C O 2": a short capital acronym glued to a number; with
    hyphens, "A12-345", an order or part number: its digits one by one, never a range."""

    text = _LETTER_CODE_RE.sub(lambda m: " ".join(m[1]) + " " + _code_words(m[2], language), text)
    return re.sub(r"\b([A-Z]{1,4})(\d+(?:\.\d+)?)\b", lambda m: " ".join(m[1]) + " " + m[2], text)


def numbers(text: str, language: str) -> str:
    """Every number left -> words."""
    return re.sub(NUM, lambda m: f"{number_words(m[0], language)}", text)


# ---------------------------------------------------------------- forms of written replies


def _unit_word(entry: str | tuple[str, str], one: bool) -> str:
    """A unit's words without the number: ("{n} watt", "{n} watts") -> "watt"."""
    return re.sub(r"\{[nf]\}\s?", "", template(entry, one)).strip()


@lru_cache(maxsize=16)
def _per_re(key: str) -> re.Pattern[str]:
    lang = LANGS[key]
    units = lang.units
    singles = sorted((u for u in units if "/" not in u and u != "%"), key=len, reverse=True)
    unit = "|".join(re.escape(u) for u in singles)
    cur = "|".join(re.escape(c) for c in sorted(lang.money, key=len, reverse=True)) or "(?!)"
    right = "|".join(sorted({*singles, *lang.per_nouns}, key=len)[::-1])
    left = rf"(?:(?:{cur})\s?{NUM}|(?:{NUM}\s?)?(?:{cur}|{unit}))"
    return re.compile(rf"(?<![\w/])({left})\s?/\s?({right})(?![\w/])")


def per_unit(text: str, language: str) -> str:
    """ "$0.32/kWh" -> "$0.32 per kilowatt hour", "ct/kWh" -> "cents per kilowatt hour",
    "€/month"; a unit of its own ("km/h", "m/s") is left to ``units``."""
    lang = own(language)
    if "/" not in text or lang is None or not lang.says.get("per"):
        return text
    units = lang.units

    def one(m: re.Match[str]) -> str:
        left, right = m[1], m[2]
        symbol = re.sub(rf"^{NUM}\s?|\s?{NUM}$", "", left)
        if f"{symbol}/{right}" in units:
            return m[0]
        per = units.get(right)
        noun = _unit_word(per, True) if per else lang.per_nouns.get(right, right)
        if symbol == left:  # no amount: "€/kWh" -> "euros per kilowatt hour"
            if symbol in lang.money:
                left = lang.money[symbol][1]
            elif symbol in units:
                left = _unit_word(units[symbol], False)
        return f"{left} {lang.says['per']} {noun}"

    return _per_re(lang_key(language)).sub(one, text)


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
    return says(language, "dot", "punto")


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


# Home Assistant's entity and helper domains (its Platform enum and the helpers): an entity id
# "light.kitchen_ceiling" or a service "light.turn_on" a reply names.
_HA_DOMAINS = (
    "air_quality|alarm_control_panel|assist_satellite|automation|binary_sensor|button|calendar|"
    "camera|climate|conversation|counter|cover|date|datetime|device_tracker|event|fan|"
    "geo_location|group|homeassistant|humidifier|image|image_processing|input_boolean|"
    "input_button|input_datetime|input_number|input_select|input_text|lawn_mower|light|lock|"
    "media_player|notify|number|persistent_notification|person|remote|scene|schedule|script|"
    "select|sensor|siren|stt|sun|switch|text|time|timer|todo|tts|update|vacuum|valve|wake_word|"
    "water_heater|weather|zone"
)
_ENTITY_RE = re.compile(
    rf"(?<![\w.@/-])({_HA_DOMAINS})\.([a-z][a-z0-9]*(?:_[a-z0-9]+)*)(?![\w.@/-]*\w)"
)


def entity_ids(text: str, language: str) -> str:
    """ "light.kitchen_ceiling" -> "light dot kitchen ceiling", "switch.tv" -> "switch dot tv":
    an id of Home Assistant read as its words, not as a web address ("dot T V") or a sentence's
    end ("light. kitchen ceiling")."""
    if "." not in text:
        return text
    dot = _dot(language)
    return _ENTITY_RE.sub(
        lambda m: f"{m[1].replace('_', ' ')} {dot} {m[2].replace('_', ' ')}", text
    )


def addresses_of_the_web(text: str, language: str) -> str:
    """URLs, e-mail addresses and paths as a person reads them: no scheme, "dot", no slashes."""
    if "/" not in text and "@" not in text and "." not in text:
        return text

    def email(m: re.Match[str]) -> str:
        local = m[1].replace(".", f" {_dot(language)} ")
        return f"{local} {says(language, 'at', 'at')} {_host_words(m[2], language)}"

    def url(m: re.Match[str]) -> str:
        host, port, path = (m[1], m[2], m[3]) if m[1] else (m[4], m[5], m[6])
        words = _host_words(host, language)
        if port:
            port_word = says(language, "port")
            words += f", {port_word} " if port_word else ", "
            words += digits(port, language)
        return f"{words}, {_path_words(path)}" if path and _path_words(path) else words

    text = _EMAIL_RE.sub(email, text)
    text = _URL_RE.sub(url, text)
    return _PATH_RE.sub(lambda m: _path_words(m[1]), text)


_CODE_RE = re.compile(r"(?<![\w.,-])\d{1,4}(?:-\d{1,4}){2,}(?![\w-]|[.,]\d)")


def digit_codes(text: str, language: str) -> str:
    """ "4-2-7-1" -> "four two seven one": three or more digit groups joined by hyphens are a
    code (dates and phone numbers are read first), never a chain of ranges."""

    return _CODE_RE.sub(lambda m: _code_words(m[0], language), text)


def _code_words(code: str, language: str) -> str:
    """Hyphenated digit groups read as a code: one digit at a time, a pause between groups of
    more than one ("12-34" -> "one two, three four"; "4-2-7" -> "four two seven")."""
    groups = code.split("-")
    if all(len(g) == 1 for g in groups):
        return digits("".join(groups), language)
    return ", ".join(digits(g, language) for g in groups)


def signs(text: str, language: str) -> str:
    """Marks a reply uses: "< 5", "> 20" -> "less/more than"; arrows and "Settings > Devices"
    (a path through menus) -> a pause; "5 * 3" -> "times"; "*", "_", "`", "|" and a hashtag's
    "#" that Markdown left are not read."""
    less, more = says(language, "less", "<"), says(language, "more", ">")
    text = re.sub(r"\s*(?:->|=>|→|⇒|➜)\s*", ", ", text)
    text = re.sub(r"(?<=\w) > (?=[A-Za-z])", ", ", text)
    text = re.sub(r"(?<![<>=-])<\s?(?=[-−]?\d)", f" {less} ", text)
    text = re.sub(r"(?<![<>=-])>\s?(?=[-−]?\d)", f" {more} ", text)
    text = re.sub(r"(?<=\d)\s?\*\s?(?=\d)", " × ", text)
    text = re.sub(r"(?<=[^\W_])_+(?=[^\W_])", " ", text)
    text = re.sub(r"#(?!\s?\d)", " ", text)
    text = re.sub(r"\s*\|\s*", ", ", text)
    return re.sub(r"[*_`]+", " ", text)


def tidy(text: str, language: str) -> str:
    """Collapse spaces, none before closing punctuation."""
    text = " ".join(text.split())
    return re.sub(r"\s+([,.;:!?…)])", r"\1", text)


STAGES: list[Stage] = [
    skip_symbols,
    entity_ids,
    addresses_of_the_web,
    signs,
    language_rules("compass"),
    letters_and_digits,
    per_unit,
    money,
    language_rules("calendar"),
    dates,
    times,
    addresses,
    digit_codes,
    ranges,
    units,
    percents,
    ordinals,
    language_rules("fractions"),
    ratios,
    words,
    numbers,
    language_rules("slashes"),
    tidy,
]


def speakable(text: str, language: str) -> str:
    """Text -> the words to say, for the espeak-ng ``language`` the text is phonemized with."""
    text = unicodedata.normalize("NFKC", text)
    for stage in STAGES:
        text = stage(text, language)
    return text
