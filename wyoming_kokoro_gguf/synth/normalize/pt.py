"""Portuguese: words, units and the forms of times, dates and ordinals."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import Lang, hour_24, register, spell, unit_table


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    """ "7:15": "sete e quinze", "sete horas"."""
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    if m:
        return f"{hour} e {mins}"
    return f"{hour} horas" if h != 1 else f"{hour} hora"


register(
    "pt",
    Lang(
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
            **unit_table(
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
        says={
            "dot": "ponto",
            "ip dot": "ponto",
            "at": "arroba",
            "per": "por",
            "and": "e",
            "first": "primeiro",
            "of": "de",
            "less": "menos de",
            "more": "mais de",
        },
        clock=_clock,
        h_clock=True,
        ordinal=(r"\b(\d+)\.?([ºªoa])(?!\w)", "ªa"),
    ),
)
