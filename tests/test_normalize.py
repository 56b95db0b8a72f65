"""Text normalization: table-driven per category and language, and the never-drop invariant."""

from __future__ import annotations

import itertools
import logging
import re

import pytest
from corpora import HOME_AUTOMATION, english_pair

from wyoming_kokoro_gguf.synth import normalize as norm
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer
from wyoming_kokoro_gguf.synth.text import split_text
from wyoming_kokoro_gguf.weights import layout

EN = [
    # cardinals, decimals, negatives, separators, long numbers
    ("It is 19.5 °C.", "It is nineteen point five degrees Celsius."),
    (
        "1,234,567 items",
        "one million two hundred thirty-four thousand five hundred sixty-seven items",
    ),
    ("-3 °C tonight", "minus three degrees Celsius tonight"),
    ("code 007", "code zero zero seven"),
    (
        "id 12345678901234567890",
        "id "
        + " ".join(
            ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"] * 2
        ),
    ),
    # ordinals, ranges, fractions, percentages
    ("the 21st and 2nd", "the twenty-first and second"),
    ("3-5 days", "three to five days"),
    ("10-20 °C", "ten to twenty degrees Celsius"),
    ("1/2 cup and 3/4 tank", "one half cup and three quarters tank"),
    ("humidity is 52%", "humidity is fifty-two percent"),
    # times
    ("at 6:45 AM", "at six forty-five A M"),
    ("at 14:30", "at two thirty P M"),
    ("at 07:15", "at seven fifteen A M"),
    ("at 7:05", "at seven oh five"),
    ("at 6 pm", "at six P M"),
    ("open 2-4 pm", "open two to four P M"),  # one range: both hours take the "pm"
    # a timer's hours, minutes and seconds: a duration, not a clock
    ("Timer: 00:05:30.", "Timer: five minutes thirty seconds."),
    ("1:30:00 remaining", "one hour thirty minutes remaining"),
    ("at 12:30:15", "at twelve thirty fifteen seconds"),
    # dates
    ("on 2026-12-02", "on December second, twenty twenty-six"),
    ("on 12/02/2026", "on December second, twenty twenty-six"),
    ("on Tue., Mar. 4.", "on Tuesday, March fourth."),
    ("Jan. 9", "January ninth"),
    ("9 Jan 2026", "January ninth, twenty twenty-six"),
    # a date without its year: a zero-led part, or a word that announces a date
    ("the bin goes out 12/02", "the bin goes out December second"),
    ("On 07/04 we", "On July fourth we"),
    ("due 3/15.", "due March fifteenth."),
    ("Friday 4/3 at noon", "Friday April third at noon"),
    ("on 3/4 of them", "on three quarters of them"),
    ("reduce by 1/2", "reduce by one half"),
    # durations and units, singular and plural
    ("2 min", "two minutes"),
    ("1 h 30 min", "one hour thirty minutes"),
    ("45 s", "forty-five seconds"),
    ("1 °C", "one degree Celsius"),
    ("8.7 kWh", "eight point seven kilowatt hours"),
    ("15 km/h", "fifteen kilometers per hour"),
    ("850 ppm", "eight hundred fifty parts per million"),
    ("12 µg/m³", "twelve micrograms per cubic meter"),
    ("1013 hPa", "one thousand thirteen hectopascals"),
    ("29.92 inHg", "twenty-nine point nine two inches of mercury"),
    ("-67 dBm", "minus sixty-seven decibel milliwatts"),
    ("300 Mbit/s", "three hundred megabits per second"),
    ("1 ft", "one foot"),
    ("6 ft", "six feet"),
    ("230 V, 16 A, 50 Hz", "two hundred thirty volts, sixteen amps, fifty hertz"),
    ("2 m³", "two cubic meters"),
    # currencies
    ("$5.99", "five dollars and ninety-nine cents"),
    ("$1", "one dollar"),
    ("€3,50", "three euros and fifty cents"),
    ("EUR 5", "five euros"),
    ("£2.50", "two pounds and fifty pence"),
    ("¥100", "one hundred yen"),
    # abbreviations and symbols
    ("Dr. Smith", "Doctor Smith"),
    ("12 Main St.", "twelve Main Street"),
    ("St. Louis", "Saint Louis"),
    ("approx. 5", "approximately five"),
    ("Mr. and Mrs. Lee", "Mister and Missus Lee"),
    # titles without the period (British style, and how Whisper writes them)
    ("Mr and Mrs Lee", "Mister and Missus Lee"),
    ("Ms Jones called", "Miz Jones called"),
    ("Dr Smith called", "Doctor Smith called"),
    ("Ask Prof Brown", "Ask Professor Brown"),
    ("turn on Dr lights", "turn on Dr lights"),
    ("No. 5", "number five"),
    ("salt & pepper", "salt and pepper"),
    ("2 + 2", "two plus two"),
    ("room #4", "room number four"),
    ("on/off", "on or off"),
    ("lights and/or fans", "lights and or fans"),
    ("PM2.5", "P M two point five"),
    # phone numbers, IP addresses, versions
    ("+1 555-123-4567", "plus one, five five five, one two three, four five six seven"),
    ("192.168.1.10", "one nine two dot one six eight dot one dot ten"),
    ("v2.3.1", "version two point three point one"),
]

EN_GB = [
    ("at 14:30", "at fourteen thirty"),
    ("at 14:00", "at fourteen hundred"),
    ("on 02/12/2026", "on the second of December twenty twenty-six"),
    ("on 31/12", "on the thirty-first of December"),
    ("12/02 it is", "the twelfth of February it is"),
    ("101 items", "one hundred and one items"),
    ("2026 items", "two thousand and twenty-six items"),
]

OTHERS = [
    ("es", "19,5 °C", "diecinueve coma cinco grados Celsius"),
    ("es", "19.5 °C", "diecinueve coma cinco grados Celsius"),
    ("es", "52 %", "cincuenta y dos por ciento"),
    ("es", "14:30", "catorce y treinta"),
    ("es", "Quedan 00:05:30.", "Quedan cinco minutos treinta segundos."),
    ("es", "2026-12-02", "dos de diciembre de dos mil veintiséis"),
    ("es", "1.234,5", "mil doscientos treinta y cuatro coma cinco"),
    ("es", "1 °C y 101", "un grado Celsius y ciento uno"),
    ("es", "1 h y 450 W", "una hora y cuatrocientos cincuenta vatios"),
    ("fr-fr", "1 h 1 min", "une heure une minute"),
    ("pt-br", "2 h", "duas horas"),
    ("cmn", "3 km/h", "每小时三公里"),
    ("hi", "14:30 बजे", "चौदह बजकर तीस मिनट"),
    ("fr-fr", "19,5 °C", "dix-neuf virgule cinq degrés Celsius"),
    ("fr-fr", "52 %", "cinquante-deux pour cent"),
    ("fr-fr", "14:30", "quatorze heures trente"),
    ("fr-fr", "01/12/2026", "premier décembre deux mille vingt-six"),
    ("fr-fr", "le 01/12", "le premier décembre"),
    ("fr-fr", "à 7h30, puis à 14h", "à sept heures trente, puis à quatorze heures"),
    ("fr-fr", "pendant 2 h", "pendant deux heures"),
    ("fr-fr", "sur www.example.com", "sur example point com"),
    ("fr-fr", "192.168.1.10", "un neuf deux point un six huit point un point dix"),
    ("hi", "www.example.com", "example डॉट com"),
    ("pt-br", "às 7h30 em www.example.com", "às sete e trinta em example ponto com"),
    ("es", "192.168.1.10", "uno nueve dos punto uno seis ocho punto uno punto diez"),
    ("it", "192.168.1.10", "uno nove due punto uno sei otto punto uno punto dieci"),
    ("hi", "192.168.1.10", "एक नौ दो डॉट एक छह आठ डॉट एक डॉट दस"),
    ("fr-fr", "le 2e étage", "le deuxième étage"),
    ("it", "19,5 °C", "diciannove virgola cinque gradi Celsius"),
    ("it", "52%", "cinquantadue per cento"),
    ("it", "07:15", "sette e quindici"),
    ("it", "2026-12-02", "due dicembre duemilaventisei"),
    ("pt-br", "19,5 °C", "dezenove vírgula cinco graus Celsius"),
    ("pt-br", "52%", "cinquenta e dois por cento"),
    ("pt-br", "14:00", "catorze horas"),
    ("pt-br", "2026-12-02", "dois de dezembro de dois mil e vinte e seis"),
    ("pt-br", "R$ 5,50", "cinco reais e cinquenta centavos"),
    ("hi", "19.5 °C", "उन्नीस दशमलव पाँच डिग्री सेल्सियस"),
    ("hi", "52%", "बावन प्रतिशत"),
    ("hi", "14:30", "चौदह बजकर तीस मिनट"),
    ("hi", "2026-12-02", "दो दिसंबर दो हज़ार छब्बीस"),
    ("ja", "きおんは19.5°C", "きおんはじゅうきゅうてんごど"),
    ("ja", "52%", "ごじゅうにパーセント"),
    ("ja", "14:30", "じゅうよじさんじゅっぷん"),
    ("ja", "07:09", "しちじきゅうふん"),
    ("ja", "10 min", "じゅっぷん"),
    ("ja", "2026-12-02", "にせんにじゅうろくねんじゅうにがつふつか"),
    ("cmn", "19.5°C", "十九点五摄氏度"),
    ("cmn", "52%", "百分之五十二"),
    ("cmn", "14:05", "十四点零五分"),
    ("cmn", "2026-12-02", "二〇二六年十二月二日"),
]


@pytest.mark.parametrize(("text", "expected"), EN)
def test_english(text: str, expected: str) -> None:
    assert norm.speakable(text, "en-us") == expected


@pytest.mark.parametrize(("text", "expected"), EN_GB)
def test_british_english(text: str, expected: str) -> None:
    assert norm.speakable(text, "en-gb") == expected


@pytest.mark.parametrize(("language", "text", "expected"), OTHERS)
def test_other_languages(language: str, text: str, expected: str) -> None:
    assert norm.speakable(text, language) == expected


def test_stages_are_text_and_language_functions() -> None:
    """Lexicons and SSML plug in as more (text, language) -> text stages."""
    assert all(callable(stage) for stage in norm.STAGES)
    assert norm.tidy("a  b ,c", "en-us") == "a b,c"


def test_a_registered_language_is_read_by_the_shared_stages() -> None:
    """A ninth language is one ``Lang`` registered: its units, words, ordinals and the words
    the stages say ("per") are used, with no other change (German here, not a Kokoro one); a
    clock time without clock words of its own is hour and minutes."""
    german = norm.Lang(
        "Komma",
        "minus",
        "{n} Prozent",
        "{a} bis {b}",
        "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
        "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag",
        {"km": "{n} Kilometer", "h": ("{n} Stunde", "{n} Stunden")},
        words={"&": "und"},
        says={"per": "pro", "first": "erster"},
        ordinal=(r"\b(\d+)\.(?=\s[A-Z])", ""),
    )
    text = "5 km/h & 2 h, 3,5 km, 12.03.2026, am 3. Tag um 7:15"
    assert norm.speakable(text, "de").startswith("five kilometers per hour")  # English tables
    norm.register("de", german)
    try:
        said = norm.speakable(text, "de")
    finally:
        del norm.LANGS["de"]
    assert said == (
        "fünf Kilometer pro Stunde und zwei Stunden, drei Komma fünf Kilometer,"
        " zwölf März zweitausendsechsundzwanzig, am dritte Tag um sieben fünfzehn"
    )


def test_emoji_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=norm.__name__):
        assert norm.speakable("Lights off 👍🏽 now 😀.", "en-us") == "Lights off now."
    assert "U+1F44D" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "It is 21.5 degrees today.",
        "See you Jan. 9 then.",
        "Ask Dr. Smith now.",
        "It takes approx. 5 minutes.",
        "Tue., Mar. 4 works.",
    ],
)
def test_splitter_never_cuts_inside(text: str) -> None:
    assert split_text(text) == [text]


HANG_S = 60.0


@pytest.mark.parametrize(
    "language", ["en-us", "en-gb", "es", "fr-fr", "it", "pt-br", "hi", "ja", "cmn"]
)
def test_hostile_text_never_raises_nor_stalls(language: str) -> None:
    """Random digit and symbol soup, and numbers beyond Python's 4300-digit int() limit."""
    import random
    import time

    rng = random.Random(language)
    alphabet = "0123456789.,:-/ %°CkmWhAaPpvV$€£¥+#@&()x\u202fstndrh"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(60)]
    texts += ["1" * 5000, "1" * 5000 + "th", "v1." + "2" * 5000, "1." * 2000, "12:" * 1500]
    texts += ["$1" * 1000, "-" * 5000 + "1", "5" * 5000 + " min", "9" * 400 + "." + "9" * 400]
    for text in texts:
        started = time.perf_counter()
        norm.speakable(text, language)
        # a hang guard, not a speed check: a regular expression that backtracks on such input
        # takes hours, any normal reading a few milliseconds, however busy the machine
        assert time.perf_counter() - started < HANG_S, text[:40]


# ------------------------------------------------------------------ never drop a word


def _corpus() -> list[str]:
    """Sentences mixing every hard case; the generated product covers their combinations."""
    heads = [
        "I think",
        "The kitchen is at",
        "Dr. Smith says approx.",
        "Tue., Mar. 4: about",
        "Tell Mrs. Lee it is",
        "No. 5 reads",
    ]
    values = [
        "19.5 °C",
        "8.7 kWh",
        "-3.25",
        "1,234,567.89",
        "12345678901234567890",
        "52%",
        "15 km/h",
        "07:15",
        "2026-12-02",
        "$5.99",
        "3-5 min",
        "850 ppm",
        "192.168.1.10",
        "v2.3.1",
        "1/2",
        "+1 555-123-4567",
    ]
    tails = [
        "and the humidity is 52%.",
        "😀 nice!",
        "with Küche and 東京 lights.",
        "& the door is open.",
        "then stop.",
    ]
    return [f"{h} {v} {t}" for h, v, t in itertools.product(heads, values, tails)]


@pytest.fixture(scope="module")
def phonemizer() -> Phonemizer:
    return Phonemizer({t: i for i, t in enumerate(layout.KOKORO_VOCAB) if t})


_KNOWN = {w.lower().strip(".") for w in [*norm.LANGS["en"].words, *norm.LANGS["en"].units]}
_KNOWN |= {"tue", "mar", "st", "km", "h", "min", "ppm", "kwh", "v", "c"}


def test_every_word_reaches_the_phonemes(phonemizer: Phonemizer) -> None:
    """Each input word survives splitting and normalization, and every normalized word gets
    phonemes: the phoneme string has as many words as the text (espeak reads each one)."""
    corpus = _corpus()
    assert len(corpus) >= 400
    for sentence in corpus:
        pieces = split_text(sentence)
        spoken = " ".join(norm.speakable(p, "en-us") for p in pieces)
        assert not re.search(r"\d", spoken), (sentence, spoken)
        for word in re.findall(r"[A-Za-zü]{2,}", sentence):
            if word.lower() not in _KNOWN:
                assert word in spoken, (sentence, word, spoken)
        for piece in pieces:
            words = norm.speakable(piece, "en-us")
            phonemes = phonemizer.phonemize(words, "en-us")
            said = [w for w in words.split() if re.search(r"\w", w)]
            heard = [w for w in phonemes.split() if re.search(r"\w", w)]
            assert len(heard) >= len(said), (piece, words, phonemes)


# ------------------------------------------------------------------ heard end to end

HARD = [
    (
        "The kitchen is at 19.5 °C and the humidity is 52%.",
        "The kitchen is at nineteen point five degrees Celsius and the humidity is fifty two percent.",
    ),
    ("I left the door open.", "I left the door open."),
    (
        "The heat pump used 8.7 kWh yesterday.",
        "The heat pump used eight point seven kilowatt hours yesterday.",
    ),
    (
        "The dentist appointment is on Tue., Mar. 4.",
        "The dentist appointment is on Tuesday, March fourth.",
    ),
    ("The wind is blowing at 15 km/h.", "The wind is blowing at fifteen kilometers per hour."),
    ("The alarm is set for 07:15.", "The alarm is set for seven fifteen A M."),
    (
        "The delivery comes on 2026-12-02.",
        "The delivery comes on December second, twenty twenty six.",
    ),
    ("The timer ends in 2 min.", "The timer ends in two minutes."),
    (
        "Carbon dioxide is at 850 ppm.",
        "Carbon dioxide is at eight hundred fifty parts per million.",
    ),
]


CORPUS = HOME_AUTOMATION  # tests/corpora.py, also spoken by script/benchmark


# The offline voices are Japanese voices reading English; jm_kumo (am_jm_kumo, the server's
# default English voice) is heard best.  Measured on this corpus with this judge (docs/TEXT.md):
# jm_kumo 0.006, jf_gongitsune 0.012, jf_nezumi 0.017, jf_tebukuro 0.031, jf_alpha 0.045.
# The whole corpus is judged once, through the server in this voice (am_jm_kumo, its English
# alias): tests/test_asr.py::test_home_automation_corpus_through_the_server.  An engine-level run
# of the same 65 sentences in the same voice heard the same two errors (docs/TEXT.md) and cost
# 9 minutes more on the busy 2-core machine.
CORPUS_VOICE = "jm_kumo"


def test_corpus_references_are_what_the_normalizer_says() -> None:
    assert len(CORPUS) >= 60
    for text, reference in CORPUS:
        assert norm.speakable(text, "en-us") == reference


def _heard_whole(reference: str, heard: str) -> bool:
    """The bar of a hard sentence: at most a fifth of its words wrong, at most one missing."""
    from asr import normalize, wer

    want, heard = english_pair(reference, heard)
    missing = set(normalize(want)) - set(normalize(heard))
    print(f"  {reference!r} -> {heard!r} (WER {wer(want, heard):.2f}, missing {missing})")
    return wer(want, heard) <= 0.2 and len(missing) <= 1


@pytest.mark.slow
def test_hard_sentences_are_heard_whole(f32_engine, asr_judge) -> None:
    """Through the real engine (CORPUS_VOICE, English) and the offline Whisper judge: no word
    of these goes missing.  Judged a packed Whisper window at a time (AsrJudge.
    transcribe_packed); a window with more than one word wrong could hold a sentence past its
    bar, so its sentences are judged again one by one against the bar."""
    import numpy as np
    from asr import normalize, word_errors

    # one word wrong in a window is within the bar of any sentence of five words or more
    assert min(len(normalize(reference)) for _, reference in HARD) >= 5
    rate = f32_engine.sample_rate
    clips = [
        np.concatenate(list(f32_engine.synthesize(text, CORPUS_VOICE, language="en-us")))
        for text, _ in HARD
    ]
    failures = []
    for indices, heard in asr_judge.transcribe_packed(clips, rate):
        want, heard = english_pair(" ".join(HARD[i][1] for i in indices), heard)
        errors = word_errors(want, heard)[0]
        print(f"window {indices}: {errors} words wrong: {heard!r}")
        if errors > 1:
            failures += [
                HARD[i][0]
                for i in indices
                if not _heard_whole(HARD[i][1], asr_judge.transcribe(clips[i], rate))
            ]
    assert not failures
