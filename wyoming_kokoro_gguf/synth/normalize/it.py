"""Italian: words, units and the forms of times, dates and ordinals."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """ "7:15": "sette e quindici", "sette in punto"."""
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    return f"{hour} e {mins}" if m else f"{hour} in punto"


register(
    "it",
    Lang(
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
            **unit_table(
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
        says={
            "dot": "punto",
            "ip dot": "punto",
            "at": "chiocciola",
            "per": "per",
            "and": "e",
            "first": "primo",
            "less": "meno di",
            "more": "più di",
        },
        clock=_clock,
        ordinal=(r"\b(\d+)\.?([ºªoa])(?!\w)", "ªa"),
    ),
)
