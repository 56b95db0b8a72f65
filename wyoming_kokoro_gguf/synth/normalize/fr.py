"""French: words, units and the forms of times, dates and ordinals."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """ "7 h 15": "sept heures quinze"."""
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    return f"{hour} heure{'s' if h > 1 else ''}" + (f" {mins}" if m else "")


register(
    "fr",
    Lang(
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
            **unit_table(
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
        says={
            "dot": "point",
            "ip dot": "point",
            "at": "arobase",
            "per": "par",
            "and": "et",
            "first": "premier",
            "less": "moins de",
            "more": "plus de",
        },
        clock=_clock,
        h_clock=True,
        ordinal=(r"\b(\d+)(er|re|e|ème|eme)\b", "re"),
    ),
)
