"""The --server columns of script/quantization_table.py: each file through the real server.

A file's figures as a Home Assistant user meets them: ``python -m wyoming_kokoro_gguf --model
FILE`` (tests/wyoming_helpers.py's ServerProcess: the plan as predicted, no first-start timing)
in a data directory of its own.  The first start builds and caches the graphs; its time to ready
and the peak RSS of the server's process tree (front end + engine process) are the "first
start" figures.  The second start reads the graph cache, as every later start does: its time
and peak, then the home-automation corpus (tests/corpora.py, 65 sentences) spoken over Wyoming
one sentence at a time, with the tree's peak reset before it (the speaking peak) and the
synthesis time over the audio time (RTF).  Whisper base judges the clips in packed windows
(tests/test_asr.py's judged_windows, as the server corpus test does) once the server is gone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "script"):
    sys.path.insert(0, str(_path))

from asr import AsrJudge, corpus_wer  # noqa: E402
from asset_cache import default_cache  # noqa: E402
from benchmark import peak_rss_mb  # noqa: E402
from corpora import HOME_AUTOMATION  # noqa: E402
from test_asr import judged_windows  # noqa: E402
from wyoming_helpers import ServerProcess, synthesize  # noqa: E402

from wyoming_kokoro_gguf.audio import SAMPLE_RATE  # noqa: E402
from wyoming_kokoro_gguf.host.probe import reset_tree_peaks  # noqa: E402

# (key, header, format) of the table --server writes; speed_x is f32's RTF over the file's.
COLUMNS = [
    ("size_mb", "size (MB)", "{:.1f}"),
    ("lsd_db", "LSD (dB)", "{:.2f}"),
    ("snr_db", "SNR (dB)", "{:.1f}"),
    ("duration_change", "durations moved", "{:.1%}"),
    ("wer", "corpus WER", "{:.3f}"),
    ("load_first_s", "first start (s)", "{:.1f}"),
    ("rss_load_first_mb", "peak RSS, first start (MB)", "{:.0f}"),
    ("load_s", "start (s)", "{:.1f}"),
    ("rss_loaded_mb", "peak RSS, start (MB)", "{:.0f}"),
    ("rss_speaking_mb", "peak RSS, speaking (MB)", "{:.0f}"),
    ("speed_x", "speed (x f32)", "{:.2f}"),
    ("loadavg", "load average", "{:.1f}"),  # the machine's, as the corpus began: speed's context
]

# What the engine's own measurement gives to the --server table (the rest the server measures).
ENGINE_KEYS = ("size_mb", "lsd_db", "snr_db", "duration_change")


def server_flags(data_dir: Path, threads: int, voice: str, extra: tuple[str, ...]) -> list[str]:
    """The same flags for every file: its own data dir (graph cache), no downloads, fixed
    threads, no phrase cache (every sentence is synthesized; its audio is not counted), and
    ``extra`` (``--mem-mb 2048``: the plan of a 2 GB board)."""
    return ["--data-dir", str(data_dir), "--local-files-only", "--threads", str(threads),
            "--cache-mb", "0", "--voice", voice, *extra]  # fmt: skip


def start(
    model: Path, data_dir: Path, threads: int, voice: str, extra: tuple[str, ...]
) -> tuple[ServerProcess, float]:
    """A ready server and the seconds from its launch to /health saying ready."""
    started = time.monotonic()
    server = ServerProcess(model, data_dir, *server_flags(data_dir, threads, voice, extra))
    try:
        server.wait_ready()
    except AssertionError as err:
        server.stop()
        raise RuntimeError(str(err).strip().splitlines()[-1]) from None
    return server, time.monotonic() - started


def stop(server: ServerProcess) -> None:
    """SIGTERM; a server that does not exit cleanly makes the row an error."""
    code = server.stop()
    if code != 0:
        raise RuntimeError(f"server exited with {code}: {server.log().strip().splitlines()[-1]}")


def first_start(
    model: Path, data_dir: Path, threads: int, voice: str, extra: tuple[str, ...]
) -> dict[str, float]:
    """The start that builds the graphs and writes their cache: its time and peak RSS."""
    server, took = start(model, data_dir, threads, voice, extra)
    try:
        peak = peak_rss_mb(server.proc.pid)
    finally:
        stop(server)
    return {"load_first_s": took, "rss_load_first_mb": peak}


def speak_corpus(
    server: ServerProcess, corpus: list[tuple[str, str]], voice: str
) -> tuple[list[np.ndarray], float]:
    """Each sentence one-shot over Wyoming: the int16 clips and the seconds they took."""
    clips, took = [], 0.0
    for text, _ in corpus:
        began = time.perf_counter()
        exchange = asyncio.run(synthesize(server.port, text, voice))
        took += time.perf_counter() - began
        if exchange.error() is not None:
            raise RuntimeError(f"{text!r}: {exchange.error().text}")
        clips.append(exchange.pcm())
    return clips, took


def later_start(
    model: Path,
    data_dir: Path,
    threads: int,
    voice: str,
    corpus: list[tuple[str, str]],
    extra: tuple[str, ...],
) -> tuple[dict[str, float], list[np.ndarray]]:
    """A start from the graph cache, then the corpus: times, peaks and the clips."""
    server, took = start(model, data_dir, threads, voice, extra)
    try:
        pid = server.proc.pid
        out = {"load_s": took, "rss_loaded_mb": peak_rss_mb(pid), "loadavg": os.getloadavg()[0]}
        if not reset_tree_peaks(pid):
            raise RuntimeError("cannot reset the peak RSS (/proc/PID/clear_refs)")
        clips, speaking = speak_corpus(server, corpus, voice)
        out["rss_speaking_mb"] = peak_rss_mb(pid)
    finally:
        stop(server)
    out["rtf"] = speaking / (sum(len(c) for c in clips) / SAMPLE_RATE)
    return out, clips


def judge(threads: int) -> AsrJudge:
    """Whisper base from the tests' asset cache (tests/asr.py)."""
    return AsrJudge(default_cache(), threads)


def measure(
    model: Path,
    workdir: Path,
    threads: int,
    voice: str,
    asr_judge: AsrJudge,
    corpus: list[tuple[str, str]] = HOME_AUTOMATION,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The server figures of one file (a fresh data directory under ``workdir``), WER included;
    ``extra``: more server flags."""
    data_dir = workdir / model.stem
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    out: dict[str, Any] = first_start(model, data_dir, threads, voice, extra)
    later, clips = later_start(model, data_dir, threads, voice, corpus, extra)
    out.update(later)
    out["wer"] = corpus_wer([pair for pair, _ in judged_windows(asr_judge, clips, corpus)])
    out["sentences"] = len(corpus)
    return out


def with_speed(rows: dict[str, dict[str, Any]], reference: str = "f32") -> dict[str, dict]:
    """Each row with speed_x, the reference's RTF over its own (2.0: twice as fast), where
    both were measured: absolute times on a shared machine compare only within one run."""
    ref_rtf = rows.get(reference, {}).get("rtf")
    out = {}
    for name, row in rows.items():
        out[name] = dict(row)
        if ref_rtf and row.get("rtf"):
            out[name]["speed_x"] = ref_rtf / row["rtf"]
    return out
