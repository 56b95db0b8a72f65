"""Mixed types under a quality budget: ``convert --type auto --max-lsd D``.

From the sensitivity table (weights/sensitivity.py), each group gets the type that makes the
smallest file whose estimated log-spectral distance from f32 stays within D.  The estimate adds
the groups' distances as independent errors (root of the sum of squares); the written file is
then spoken end to end by the engine on the calibration sentences, and while it misses the
budget, the group whose type costs most moves one step toward f16 and the file is written again.
Types whose own durations would move more than ``max_duration_change`` of the frames are never
chosen for the text stage's groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from wyoming_kokoro_gguf.weights import groups
from wyoming_kokoro_gguf.weights.model_file import MIXED_KEY
from wyoming_kokoro_gguf.weights.quant_table import Cost, Table

STEPS = 2000  # resolution of the squared-distance budget in the choice below
KEY_GROUPS = MIXED_KEY  # ["group=type", ...]
KEY_MAX_LSD = "wyoming_kokoro_gguf.max_lsd"
KEY_LSD = "wyoming_kokoro_gguf.lsd"
KEY_DURATIONS = "wyoming_kokoro_gguf.duration_change"


class BudgetError(Exception):
    """No choice of types meets the budget (one-line message)."""


@dataclass
class Plan:
    """Each group's type, with what the table predicts for it."""

    types: dict[str, str]
    bytes: int
    estimate: float  # estimated LSD (dB)
    checks: list[tuple[dict[str, str], Cost]] = field(default_factory=list)


def _options(table: Table, group: str, max_duration_change: float) -> list[tuple[str, int, float]]:
    """(type, bytes, lsd) of a group's admissible types, f16 always among them."""
    out = []
    for t in _distinct(table.types):
        r = table.cost(group, t)
        if r is None or (r.duration_change > max_duration_change and t != "f16"):
            continue
        out.append((t, r.bytes, r.lsd_db))
    if not any(t == "f16" for t, _, _ in out):
        raise BudgetError(f"the sensitivity table has no f16 row for group {group}")
    return out


def _distinct(types: list[str]) -> list[str]:
    """The types, less those storing the same values as another in more room (TQ2_0)."""
    return [t for t in types if groups.SAME_VALUES.get(t) not in types]


def choose(table: Table, max_lsd: float, max_duration_change: float = 0.05) -> Plan:
    """The smallest file whose estimated LSD is within ``max_lsd`` (a multiple-choice knapsack
    on the squared distances, solved exactly at STEPS steps of the budget)."""
    if max_lsd <= 0:
        raise BudgetError("--max-lsd must be a positive number of dB")
    budget = max_lsd**2
    unit = budget / STEPS
    # best[s] = (bytes, choices) for squared-distance use s (in units)
    best: list[tuple[int, dict[str, str]] | None] = [(0, {})] + [None] * STEPS
    for group in table.groups:
        nxt: list[tuple[int, dict[str, str]] | None] = [None] * (STEPS + 1)
        for used, entry in enumerate(best):
            if entry is None:
                continue
            size, chosen = entry
            for t, nbytes, lsd in _options(table, group, max_duration_change):
                s = used + math.ceil(lsd**2 / unit - 1e-9)
                if s > STEPS:
                    continue
                if nxt[s] is None or size + nbytes < nxt[s][0]:
                    nxt[s] = (size + nbytes, {**chosen, group: t})
        best = nxt
    found = [(e[0], s, e[1]) for s, e in enumerate(best) if e is not None]
    if not found:
        floor = estimate(table, {g: "f16" for g in table.groups})
        raise BudgetError(
            f"no choice of types is within {max_lsd} dB (all f16 is estimated at {floor:.2f} dB)"
        )
    size, _, types = min(found)
    return Plan(types, size, estimate(table, types))


def estimate(table: Table, types: dict[str, str]) -> float:
    """Estimated LSD of a choice: the groups' distances added as independent errors."""
    return math.sqrt(sum(table.cost(g, t).lsd_db ** 2 for g, t in types.items()))


def step_back(table: Table, types: dict[str, str]) -> dict[str, str] | None:
    """``types`` with its costliest group one step toward f16 (None when all are f16)."""
    ranked = sorted((table.cost(g, t).lsd_db, g) for g, t in types.items() if t != "f16")
    if not ranked:
        return None
    _, group = ranked[-1]
    ladder = [t for t in _distinct(table.types) if table.cost(group, t) is not None]
    ladder.sort(key=lambda t: -table.cost(group, t).bytes)  # largest (f16) first
    here = ladder.index(types[group])
    return {**types, group: ladder[max(here - 1, 0)]}


def metadata(types: dict[str, str], max_lsd: float, cost: Cost) -> dict[str, object]:
    """The GGUF keys that record what a mixed file was made for (``inspect`` shows them)."""
    return {
        KEY_GROUPS: [f"{g}={t}" for g, t in types.items()],
        KEY_MAX_LSD: float(max_lsd),
        KEY_LSD: float(round(cost.lsd_db, 3)),
        KEY_DURATIONS: float(round(cost.duration_change, 4)),
    }


def read_metadata(meta: dict[str, object]) -> dict[str, object] | None:
    """The budget a file records, or None for a file not made by ``--type auto``."""
    pairs = meta.get(KEY_GROUPS)
    if not pairs:
        return None
    return {
        "groups": dict(str(p).split("=", 1) for p in pairs),  # type: ignore[union-attr]
        "max_lsd": meta.get(KEY_MAX_LSD),
        "lsd": meta.get(KEY_LSD),
        "duration_change": meta.get(KEY_DURATIONS),
    }


def load_table(path: str | Path) -> Table:
    """A table ``convert --sensitivity`` wrote."""
    return Table.from_json(Path(path).read_text())
