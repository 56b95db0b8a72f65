"""Describe a Kokoro GGUF file.

    python -m wyoming_kokoro_gguf.inspect FILE [--json] [--voices DIR]

Prints the architecture, the tensor layout (TTS.cpp's or CrispASR's), how the weights are stored, tensor count and bytes per type, the
hyper-parameters, the voices with their languages, and the phonemizer type.  Exit code 2 when the
file cannot be used (with the reader's one-line reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wyoming_kokoro_gguf.weights import budget, crispasr, layout, layouts
from wyoming_kokoro_gguf.weights.model_file import KokoroModelFile, ModelFileError, open_model

PHONEMIZERS = {
    layout.PHONEMIZER_ESPEAK: "espeak-ng",
    layout.PHONEMIZER_TTS: "TTS.cpp rules/dictionary",
}


def describe(mf: KokoroModelFile) -> dict[str, Any]:
    """The facts ``inspect`` prints, as plain data."""
    size = mf.path.stat().st_size
    return {
        "path": str(mf.path),
        "size": size,
        "architecture": mf.architecture,
        "layout": mf.layout,
        "voice_files": [str(p) for p in mf.voice_files],
        "file_type": mf.file_type,
        "tensors": len(mf.tensor_names),
        "types": mf.type_summary,
        "hparams": {
            k: v
            for k, v in mf.hparams.items()
            if k.startswith(("kokoro.", "general.", "wyoming_kokoro_gguf."))
        },
        "dims": mf.dims.to_dict(),
        "vocab_size": len(mf.vocab),
        "phonemizer_type": mf.phonemizer_type,
        "phonemizer": PHONEMIZERS.get(mf.phonemizer_type, "unknown"),
        "not_read": mf.skipped,
        "budget": budget.read_metadata(mf.metadata),
        "voices": {
            name: {
                "language": v.language,
                "language_name": v.language_name,
                "espeak": v.espeak,
                "gender": v.gender,
            }
            for name, v in mf.voices.items()
        },
    }


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


def _layout_line(info: dict[str, Any]) -> str:
    if info["layout"] == layouts.TTSCPP:
        return info["layout"]
    files = info["voice_files"]
    where = str(Path(files[0]).parent) if files else "nowhere"
    return (
        f"{info['layout']}, read as TTS.cpp's (tensor counts below); voices from "
        f"{len(files)} {crispasr.VOICE_FILE_PREFIX}*.gguf files in {where}"
    )


def _budget_lines(made_for: dict[str, Any] | None) -> list[str]:
    """A mixed file's type per tensor group and the budget it was made for."""
    if not made_for:
        return []
    lines = [
        f"made for:      log-spectral distance <= {made_for['max_lsd']:.2f} dB from f32 "
        f"(measured {made_for['lsd']:.2f} dB; durations moved "
        f"{100 * float(made_for['duration_change'] or 0):.1f}%)",
        "type per group:",
    ]
    lines += [f"  {g:<26} {t}" for g, t in made_for["groups"].items()]
    return lines


def render(info: dict[str, Any]) -> str:
    lines = [
        f"file:          {info['path']} ({_human(info['size'])})",
        f"architecture:  {info['architecture']}",
        f"layout:        {_layout_line(info)}",
        f"weights:       {info['file_type']}",
        f"tensors:       {info['tensors']}",
    ]
    for t, e in sorted(info["types"].items(), key=lambda kv: -kv[1]["bytes"]):
        lines.append(
            f"  {t:<6} {e['tensors']:>5} tensors  {_human(e['bytes']):>10}  {e['elements']:>11,} values"
        )
    lines += _budget_lines(info.get("budget"))
    lines.append(f"phonemizer:    {info['phonemizer_type']} ({info['phonemizer']})")
    if info["not_read"]:
        tables = (f"{k} ({n:,} strings)" for k, n in info["not_read"].items())
        lines.append(f"not read:      {', '.join(tables)}")
    lines.append(f"vocabulary:    {info['vocab_size']} tokens")
    lines.append("hyper-parameters:")
    for k, v in info["hparams"].items():
        lines.append(f"  {k} = {v}")
    by_lang: dict[str, list[str]] = {}
    for name, v in info["voices"].items():
        by_lang.setdefault(f"{v['language']} ({v['language_name']})", []).append(name)
    lines.append(f"voices:        {len(info['voices'])}")
    for lang, names in by_lang.items():
        lines.append(f"  {lang}: {', '.join(names)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_kokoro_gguf.inspect", description="Describe a Kokoro GGUF file."
    )
    parser.add_argument("file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--voices", help="a CrispASR model's voice files (default: the model's directory)"
    )
    args = parser.parse_args(argv)
    try:
        mf = open_model(args.file, args.voices)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = describe(mf)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else render(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
