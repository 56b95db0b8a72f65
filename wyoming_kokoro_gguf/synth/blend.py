"""Voice blends: ``NAME=VOICE:WEIGHT,...`` definitions and their ``VOICE:WEIGHT,...`` formulas.

One parser for every place a blend is written (the --voice-blend flag, the add-on's
voice_blends option, a formula given to the engine as a voice), so that a formula accepted in
one place is accepted in all of them.  The rule: voice and blend names are letters, digits,
``_``, ``.`` and ``-`` (no path separators), every voice has an explicit weight above 0.
"""

from __future__ import annotations

import re

NAME = r"[A-Za-z0-9_.-]+"
_DEFINITION = re.compile(rf"^\s*({NAME})\s*=\s*(.+?)\s*$")
_PART = re.compile(rf"^\s*({NAME})\s*:\s*([0-9]*\.?[0-9]+)\s*$")
EXAMPLE = "af_heart:0.7,af_bella:0.3"


class BlendError(ValueError):
    """A blend definition or formula is malformed (the message says which part)."""


def formula_parts(formula: str) -> list[tuple[str, str]]:
    """``"af_heart:0.7, af_bella:0.3"`` -> [("af_heart", "0.7"), ("af_bella", "0.3")]."""
    if not formula.strip():
        raise BlendError(f"expected VOICE:WEIGHT,... such as {EXAMPLE}")
    parts = []
    for part in formula.split(","):
        match = _PART.match(part)
        if not match or float(match.group(2)) <= 0:
            raise BlendError(f"{part.strip()!r} is not VOICE:WEIGHT with a weight above 0")
        parts.append((match.group(1), match.group(2)))
    return parts


def canonical_formula(formula: str) -> str:
    """The formula without white space: ``af_heart:0.7,af_bella:0.3`` (how voices show it)."""
    return ",".join(f"{voice}:{weight}" for voice, weight in formula_parts(formula))


def parse_blend(formula: str) -> list[tuple[str, float]]:
    """``"af_heart:0.7,af_bella:0.3"`` -> [("af_heart", 0.7), ("af_bella", 0.3)], weights
    normalized to sum to 1 (what the engine mixes the style vectors by)."""
    parts = [(voice, float(weight)) for voice, weight in formula_parts(formula)]
    total = sum(weight for _, weight in parts)
    return [(voice, weight / total) for voice, weight in parts]


def parse_definition(value: str) -> tuple[str, str]:
    """``"mix=af_heart:0.7, af_bella:0.3"`` -> ("mix", "af_heart:0.7,af_bella:0.3")."""
    match = _DEFINITION.match(value)
    if not match:
        raise BlendError(f"expected NAME=VOICE:WEIGHT,... (for example mix={EXAMPLE})")
    return match.group(1), canonical_formula(match.group(2))
