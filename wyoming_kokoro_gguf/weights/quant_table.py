"""The sensitivity table: what each tensor group costs in each type (``convert --sensitivity``
writes it, ``convert --type auto`` chooses from it, docs/QUANTIZATION.md shows it).

Kept apart from the measuring (weights/sensitivity.py, which needs the engine) so that reading a
table or a mixed file's budget imports no ONNX Runtime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wyoming_kokoro_gguf.weights import groups, quants


@dataclass
class Cost:
    """Mean cost over the calibration sentences."""

    snr_db: float
    lsd_db: float
    duration_change: float  # fraction of frames moved by the durations the changed model predicts


@dataclass
class Row:
    group: str
    type: str
    tensors: int
    params: int
    bytes: int
    stage: str  # "1" text stage, "2" audio stage, "1+2" read by both
    snr_db: float
    lsd_db: float
    duration_change: float


@dataclass
class Table:
    """Sensitivity of every group to every candidate type (``convert --sensitivity``)."""

    model: str
    voice: str
    sentences: list[str]
    types: list[str]
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # e.g. K-quants without llama-cpp-python
    seconds: float = 0.0

    def cost(self, group: str, qtype: str) -> Row | None:
        for r in self.rows:
            if r.group == group and r.type == qtype:
                return r
        return None

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Table:
        data = json.loads(text)
        rows = [Row(**r) for r in data.pop("rows")]
        return cls(**data, rows=rows)

    def to_markdown(self) -> str:
        """LSD (dB) and SNR (dB) per group and type, with the group's size."""
        head = "| group | stage | params | " + " | ".join(self.types) + " |"
        lines = [
            f"Sensitivity of {Path(self.model).name}, voice {self.voice}, "
            f"{len(self.sentences)} sentences on the f32 durations: "
            "log-spectral distance (dB) / waveform SNR (dB) against f32 "
            "(LSD 0 and SNR inf = the same audio); in text-stage groups, "
            "[d x%] = frames the group's own durations would move.",
            "",
            head,
            "|" + "---|" * (3 + len(self.types)),
        ]
        for g in self.groups:
            first = next(r for r in self.rows if r.group == g)
            cells = []
            for t in self.types:
                r = self.cost(g, t)
                cells.append("-" if r is None else _cell(r))
            lines.append(
                f"| {g} | {first.stage} | {first.params / 1e6:.2f}M | " + " | ".join(cells) + " |"
            )
        if self.skipped:
            lines += ["", "Not measured: " + "; ".join(self.skipped)]
        return "\n".join(lines) + "\n"


def _cell(r: Row) -> str:
    text = f"{r.lsd_db:.2f} / {r.snr_db:.1f}"
    if r.duration_change > 0:
        text += f" [d {100 * r.duration_change:.1f}%]"
    return text


def candidate_types(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """The types to measure and a note per type skipped (K-quants without libggml)."""
    names = list(requested or groups.LADDER + groups.K_LADDER)
    skipped = []
    have_k = "q4_k" in quants.available_types()
    for name in list(names):
        quants.parse_type(name)  # QuantError for an unknown name
        if quants.TYPE_NAMES[name] in quants.K_QUANTS and not have_k:
            names.remove(name)
            skipped.append(f"{name} (needs llama-cpp-python's libggml)")
        elif name == "f32":
            names.remove(name)
    return names, skipped
