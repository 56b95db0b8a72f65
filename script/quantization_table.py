"""The table of docs/QUANTIZATION.md: uniform types and budgeted files against f32.

    script/quantization_table.py F32.gguf SENSITIVITY.json OUTDIR [--budgets 2.5,4,6]
        [--types f16,q8_0,q5_0,q4_0,mxfp4,tq1_0] [--wer N] [--threads 2]

Writes one file per uniform type (every group in that type: ``--quantize-all``'s set, the rest
f16) and one per budget (``convert --type auto --max-lsd D --table SENSITIVITY.json``), then
measures each in its own process: file size, load time (graphs built, no cache) and peak RSS
while loading and while speaking (VmHWM reset after loading), speed (real-time factor), log-spectral distance and SNR
against f32 on the f32 durations, the frames its own durations move, and with ``--wer N`` the
word error rate of the first N sentences of the home-automation corpus (tests/corpora.py)
judged by Whisper base (tests/asr.py).  Writes OUTDIR/quantization.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wyoming_kokoro_gguf.weights import budget, convert, groups, quants  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import numpy as np
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import default_options
from wyoming_kokoro_gguf import audio as audio_cost

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, ref, threads = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
engine = Engine.load(path, default_options().with_threads(threads))
out = {"load_s": time.perf_counter() - t0, "rss_loaded_mb": hwm()}
with open("/proc/self/clear_refs", "w") as f:  # VmHWM from here on: speaking only
    f.write("5")
t0 = time.perf_counter()
audio = engine.run_tokens(ref["tokens"], ref["style"], 1.0, durations=ref["durations"])
took = time.perf_counter() - t0
own = engine.durations(ref["tokens"], ref["style"])
out.update(rss_speaking_mb=hwm(), rtf=took / (len(audio) / 24000),
           lsd_db=audio_cost.log_spectral_distance(ref["audio"], audio),
           snr_db=audio_cost.snr_db(ref["audio"], audio),
           duration_change=audio_cost.duration_change(ref["durations"], own))
wer_n = int(sys.argv[5])
if wer_n:
    sys.path.insert(0, sys.argv[4] + "/tests")
    import asr, corpora
    judge = asr.AsrJudge(Path(sys.argv[6]))
    pairs = []
    for text, heard in corpora.HOME_AUTOMATION[:wer_n]:
        speech = np.concatenate(list(engine.synthesize(text, sys.argv[7])))
        pairs.append(corpora.english_pair(heard, judge.transcribe(speech, 24000)))
    out["wer"] = asr.corpus_wer(pairs)
print(json.dumps(out))
"""


def write_files(f32: Path, table_path: Path, outdir: Path, types: list[str], budgets: list[float],
                threads: int) -> dict[str, Path]:  # fmt: skip
    """The uniform and budgeted files (reused when already there)."""
    from wyoming_kokoro_gguf.weights import auto

    table = budget.load_table(table_path)
    source = convert.load_source(f32, None, lambda m: None)
    files = {"f32": f32}
    all_groups = list(groups.groups(list(source.tensors)))
    for name in types:
        path = outdir / f"uniform-{name}.gguf"
        if not path.exists():
            qtype = quants.parse_type(name)
            convert.write_gguf(source, path, "f16", group_types=dict.fromkeys(all_groups, qtype))
        files[f"uniform {name}"] = path
    for d in budgets:
        path = outdir / f"auto-{d:g}dB.gguf"
        if not path.exists():
            auto.convert_auto(f32, path, d, table_path=table_path, voice=table.voice,
                              threads=threads, progress=print)  # fmt: skip
        files[f"auto, max LSD {d:g} dB"] = path
    return files


def reference(f32: Path, table_path: Path, outdir: Path, threads: int) -> Path:
    """The f32 model's tokens, style, durations and audio for the table's sentence."""
    from wyoming_kokoro_gguf.weights import sensitivity
    from wyoming_kokoro_gguf.weights.model_file import open_model

    table = budget.load_table(table_path)
    options = sensitivity.default_options().with_threads(threads)
    bench = sensitivity.Bench(open_model(f32), options, table.voice, table.sentences[:1])
    s = bench.sentences[0]
    path = outdir / "reference.npz"
    np.savez(path, tokens=s.tokens, style=s.style, durations=s.durations, audio=s.audio)
    return path


def measure(path: Path, ref: Path, threads: int, wer: int, voice: str) -> dict:
    cache = Path.home() / ".cache/wyoming_kokoro_gguf/test-assets"
    argv = [sys.executable, "-c", CHILD, str(path), str(ref), str(threads), str(ROOT), str(wer),
            str(cache), voice]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["size_mb"] = path.stat().st_size / 1e6
    return out


def markdown(rows: dict[str, dict]) -> str:
    cols = [("size_mb", "size (MB)", "{:.1f}"), ("lsd_db", "LSD (dB)", "{:.2f}"),
            ("snr_db", "SNR (dB)", "{:.1f}"), ("duration_change", "durations moved", "{:.1%}"),
            ("wer", "WER", "{:.3f}"), ("load_s", "load (s)", "{:.1f}"),
            ("rss_loaded_mb", "RSS loaded (MB)", "{:.0f}"),
            ("rss_speaking_mb", "RSS speaking (MB)", "{:.0f}"), ("rtf", "RTF", "{:.2f}")]  # fmt: skip
    lines = ["| file | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [fmt.format(r[key]) if key in r else "-" for key, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("f32")
    parser.add_argument("table")
    parser.add_argument("outdir")
    parser.add_argument("--budgets", default="2.5,4,6")
    parser.add_argument("--types", default="f16,q8_0,q5_0,q4_0,mxfp4,tq1_0")
    parser.add_argument("--wer", type=int, default=0, help="corpus sentences judged (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only", help="measure only the files whose name contains one of these (comma-separated)"
    )
    args = parser.parse_args()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    f32, table = Path(args.f32), Path(args.table)
    budgets = [float(b) for b in args.budgets.split(",") if b]
    files = write_files(f32, table, outdir, args.types.split(","), budgets, args.threads)
    ref = reference(f32, table, outdir, args.threads)
    voice = budget.load_table(table).voice
    rows = {}
    for name, path in files.items():
        if args.only and not any(part in name for part in args.only.split(",")):
            continue
        started = time.monotonic()
        rows[name] = measure(path, ref, args.threads, args.wer, voice)
        print(f"{name}: {rows[name]} ({time.monotonic() - started:.0f} s)", flush=True)
    tag = "-" + args.only.replace(",", "-").replace(" ", "") if args.only else ""
    (outdir / f"quantization{tag}.json").write_text(json.dumps(rows, indent=1))
    (outdir / f"quantization{tag}.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
