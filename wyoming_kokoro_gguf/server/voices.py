"""What the server says about its voices: names, language tags and the descriptions users see.

Plain data and text rules only (no Wyoming import): the engine process builds these records
from the model file and sends them across the process boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wyoming_kokoro_gguf.synth.blend import formula_parts
from wyoming_kokoro_gguf.weights.layout import VoiceInfo


@dataclass(frozen=True)
class VoiceDesc:
    """What the server advertises about one voice (plain data: it crosses the process pipe)."""

    name: str
    language: str
    language_name: str = ""
    gender: str = ""
    blend: str | None = None


def clean_language_tag(tag: str) -> str:
    """'en_us' / 'en-us' / 'EN-US' -> 'en-US' (the BCP 47 shape Home Assistant groups voices by)."""
    parts = [p for p in re.split(r"[-_]", tag.strip()) if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for p in parts[1:]:
        if len(p) == 2 and p.isalpha():
            out.append(p.upper())
        elif len(p) == 4 and p.isalpha():
            out.append(p.title())
        else:
            out.append(p.lower())
    return "-".join(out)


def voice_title(name: str) -> str:
    """'af_heart' -> 'Heart', 'af_jf_alpha' (an English alias) -> 'Alpha', 'my-mix' -> 'My Mix'."""
    base = re.sub(r"^(?:[a-z]{2}_)+", "", name) or name
    words = [w for w in re.split(r"[_\-\s]+", base) if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or name


def voice_description(voice: VoiceDesc) -> str:
    """'Heart - American English, female' (what Home Assistant shows in its voice picker)."""
    details = [voice.language_name or voice.language]
    if voice.gender:
        details.append(voice.gender)
    if voice.blend:
        details.append("blend of " + blend_summary(voice.blend))
    return f"{voice_title(voice.name)} - {', '.join(d for d in details if d)}"


def blend_summary(formula: str) -> str:
    """'af_heart:0.7,af_bella:0.3' -> 'af_heart 70% + af_bella 30%'."""
    parts = formula_parts(formula)
    total = sum(float(w) for _, w in parts) or 1.0
    return " + ".join(f"{name} {round(100 * float(w) / total)}%" for name, w in parts)


def voice_from_info(name: str, info: VoiceInfo, blend: str | None = None) -> VoiceDesc:
    """The advertised record of a model voice or blend (the engine's VoiceInfo, made plain)."""
    return VoiceDesc(
        name=name,
        language=clean_language_tag(info.language or info.espeak or "en-US"),
        language_name=info.language_name or "",
        gender=info.gender or "",
        blend=blend,
    )
