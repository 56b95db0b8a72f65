"""The table of docs/QUANTIZATION.md: uniform types and budgeted files against f32.

    script/quantization_table.py F32.gguf SENSITIVITY.json OUTDIR [--budgets 4,6,8]
        [--types f16,q8_0,q5_0,q4_0,mxfp4,tq2_0,tq1_0] [--wer N] [--threads 2] [--server]

Writes one file per uniform type (every group in that type: ``--quantize-all``'s set, the rest
f16) and one per budget (``convert --type auto --max-lsd D --table SENSITIVITY.json``), then
measures each in its own process: file size, load time (graphs built, no cache) and peak RSS
while loading and while speaking (VmHWM reset after loading), speed (real-time factor),
log-spectral distance and SNR against f32 on the f32 durations, the frames its own durations
move, and with ``--wer N`` the word error rate of the first N sentences of the home-automation
corpus (tests/corpora.py) judged by Whisper base (tests/asr.py).  Writes
OUTDIR/quantization.{json,md}.

``--server`` keeps the engine's LSD, SNR and durations and measures the rest through the real
server (script/quantization_server.py): first and later start, the server's peak RSS while
loading and while speaking, the whole corpus (or the first ``--wer N`` sentences) over Wyoming
for speed (a ratio to f32's in the same run) and word error rate.  Writes
OUTDIR/quantization-server.{json,md}, after each file (``--resume`` keeps its error-free rows).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
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


ENGINE_COLUMNS = [
    ("size_mb", "size (MB)", "{:.1f}"),
    ("lsd_db", "LSD (dB)", "{:.2f}"),
    ("snr_db", "SNR (dB)", "{:.1f}"),
    ("duration_change", "durations moved", "{:.1%}"),
    ("wer", "WER", "{:.3f}"),
    ("load_s", "load (s)", "{:.1f}"),
    ("rss_loaded_mb", "RSS loaded (MB)", "{:.0f}"),
    ("rss_speaking_mb", "RSS speaking (MB)", "{:.0f}"),
    ("rtf", "RTF", "{:.2f}"),
]


def cell(value: float | None, fmt: str) -> str:
    """A figure as the table shows it: "-" where there is none (or it is infinite: f32's
    SNR against itself)."""
    return "-" if value is None or not np.isfinite(value) else fmt.format(value)


def markdown(rows: dict[str, dict], cols: list[tuple[str, str, str]] = ENGINE_COLUMNS) -> str:
    """A Markdown table: a row per file, a column per (key, header, format); "-" where a file
    has no such figure (an error row has none)."""
    lines = ["| file | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [cell(r.get(key), fmt) for key, _, fmt in cols]
        note = f" (error: {r['error']})" if "error" in r else ""
        lines.append(f"| {name}{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("f32")
    parser.add_argument("table")
    parser.add_argument("outdir")
    parser.add_argument("--budgets", default="4,6,8")
    parser.add_argument("--types", default="f16,q8_0,q5_0,q4_0,mxfp4,tq2_0,tq1_0")
    parser.add_argument(
        "--wer", type=int, default=0, help="corpus sentences judged (0: none; --server: all)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only", help="measure only the files whose name contains one of these (comma-separated)"
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="load, memory, speed and WER through the real server (script/quantization_server.py)",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="measure this file too (e.g. a published q8_0), repeatable",
    )
    parser.add_argument(
        "--server-flags",
        default="",
        help="more flags for the server, e.g. '--mem-mb 2048' (a 2 GB board's plan)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows of an earlier run's JSON without errors",
    )
    return parser.parse_args()


def measure_row(name: str, path: Path, ref: Path, voice: str, args: argparse.Namespace,
                judge: object) -> dict:  # fmt: skip
    """One file's row: the engine figures, and with --server the server's over them."""
    started = time.monotonic()
    row = measure(path, ref, args.threads, 0 if args.server else args.wer, voice)
    if args.server and "error" not in row:
        import quantization_server as served

        row = {k: v for k, v in row.items() if k in served.ENGINE_KEYS}
        corpus = served.HOME_AUTOMATION[: args.wer or None]
        workdir = Path(args.outdir) / "servers" / output_name(args)  # a run its own dirs
        extra = tuple(shlex.split(args.server_flags))
        try:
            row.update(served.measure(path, workdir, args.threads, voice, judge, corpus, extra))
        except RuntimeError as err:
            row["error"] = str(err)
    print(f"{name}: {row} ({time.monotonic() - started:.0f} s)", flush=True)
    return row


def main() -> int:
    args = parse_args()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    f32, table = Path(args.f32), Path(args.table)
    budgets = [float(b) for b in args.budgets.split(",") if b]
    files = write_files(f32, table, outdir, args.types.split(","), budgets, args.threads)
    files.update(also_files(args.also))
    ref = reference(f32, table, outdir, args.threads)
    voice = budget.load_table(table).voice
    stem = outdir / output_name(args)
    rows = kept_rows(stem.with_suffix(".json")) if args.resume else {}
    judge = None
    if args.server:
        import quantization_server as served

        judge = served.judge(args.threads)
    for name, path in selected(files, args.only).items():
        if name not in rows:
            rows[name] = measure_row(name, path, ref, voice, args, judge)
            stem.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    rows = {name: rows[name] for name in files if name in rows}  # the table in the files' order
    text = render(rows, args.server)
    stem.with_suffix(".md").write_text(text)
    print(text)
    return 0


def selected(files: dict[str, Path], only: str | None) -> dict[str, Path]:
    """--only: the files whose name contains one of its parts, in the order of the parts (the
    ones that matter most measured first); all files without it."""
    if not only:
        return files
    picked: dict[str, Path] = {}
    for part in only.split(","):
        picked.update((name, path) for name, path in files.items() if part in name)
    return picked


def also_files(specs: list[str]) -> dict[str, Path]:
    """--also NAME=PATH: more files to measure, by the name their row gets."""
    files = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--also {spec!r}: give NAME=PATH of an existing file")
        files[name] = Path(path)
    return files


def output_name(args: argparse.Namespace) -> str:
    """quantization[-server][-FLAGS][-ONLY]: runs with other files or flags write their own."""
    parts = ["quantization", "server" if args.server else ""]
    parts += [args.server_flags if args.server else "", args.only or ""]
    return "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", p).strip("_") for p in parts if p)


def kept_rows(path: Path) -> dict[str, dict]:
    """An earlier run's rows that have no error (--resume)."""
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if "error" not in v}


def render(rows: dict[str, dict], server: bool) -> str:
    """The table: the engine's columns, or the server's with speed as a ratio to f32's."""
    if not server:
        return markdown(rows)
    import quantization_server as served

    return markdown(served.with_speed(rows), served.COLUMNS)


if __name__ == "__main__":
    raise SystemExit(main())
