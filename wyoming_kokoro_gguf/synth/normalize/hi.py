"""Hindi: words, units and the form of clock times."""

from __future__ import annotations

import re

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """ "7:15": "सात बजकर पंद्रह मिनट", "सात बजे"."""
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    return f"{hour} बजकर {mins} मिनट" if m else f"{hour} बजे"


def _times(text: str, language: str) -> str:
    """ "7 बजे बजे": a time already followed by its word says it once."""
    return re.sub(r"(मिनट|बजे) बजे", r"\1", text)


register(
    "hi",
    Lang(
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
            **unit_table(
                "W=वाट; kW=किलोवाट; kWh=किलोवाट घंटा; V=वोल्ट; A=एम्पियर; km=किलोमीटर;"
                " m=मीटर; cm=सेंटीमीटर; mm=मिलीमीटर; L=लीटर; kg=किलोग्राम; g=ग्राम;"
                " s=सेकंड; h=घंटे"
            ),
        },
        {"₹": ("रुपया", "रुपये", "पैसा", "पैसे")},
        says={"dot": "डॉट", "ip dot": "डॉट", "per": "प्रति", "and": "और"},
        rules={"times": _times},
        clock=_clock,
        decimal_point=True,
    ),
)
