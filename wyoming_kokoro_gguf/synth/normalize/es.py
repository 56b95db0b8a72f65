"""Spanish: words, units and the forms of times, dates and ordinals."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """ "las 7 y 15": "siete y quince", "siete en punto"."""
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    return f"{hour} y {mins}" if m else f"{hour} en punto"


register(
    "es",
    Lang(
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
            **unit_table(
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
        says={
            "dot": "punto",
            "ip dot": "punto",
            "at": "arroba",
            "per": "por",
            "and": "con",
            "first": "primero",
            "of": "de",
            "less": "menos de",
            "more": "más de",
        },
        clock=_clock,
        ordinal=(r"\b(\d+)\.?([ºªoa])(?!\w)", "ªa"),
    ),
)
