"""The host measures its own plan: on a first start, time the lowerings the memory plan allows.

Why: the host plan's speed figures come from the few machines this project ran on; most Home
Assistant boxes (Pi 4, Pi 5, Green, N100, older mini PCs) were never measured, and on some of
them the guess is wrong (int8 convolutions paid 1.13-1.2x on an AVX2 CPU without VNNI, where the
plan assumed no gain).  So while the graph cache is built anyway, the engine runs each candidate
on a calibration text, keeps the fastest whose audio passes a quality guard against the fp32
lowering, and caches the choice beside the graph entries (docs/PERFORMANCE.md, "The host
measures its plan").  Levers set with flags are not candidates.

Search: one lever at a time (convolutions at the planned threads, one pass, the planned type
first; then threads; then passes), each trial on sessions from the graph cache, so every lever
after the convolutions costs one cache load and a few passes, not a build.  Past the budget the
candidates not yet tried keep their planned values, the other convolution type included.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wyoming_kokoro_gguf.audio import log_spectral_distance, snr_db
from wyoming_kokoro_gguf.synth import graph_cache
from wyoming_kokoro_gguf.synth.engine import Engine
from wyoming_kokoro_gguf.synth.lowering import EngineOptions
from wyoming_kokoro_gguf.synth.phonemes import Phonemizer

_LOG = logging.getLogger(__name__)

# Three short sentences: the engine cuts them into three passes, so two passes at once can show.
TIMING_TEXT = "Is the shop open? Six zebras jump. The lights are off."
# One pass on fixed durations for the quality guard (durations from the fp32 lowering).
GUARD_TEXT = "Is the shop open? Six zebras jump, then fly away."
TIMING_RUNS = 2  # runs per candidate after its warm-up; the fastest counts (a shared CPU)
# A run longer than this is its own average: no second one, and it stops after the piece it is
# on (a slow board, or an emulator, whose first start must stay bounded: under QEMU's Pi 5 one
# run of the three pieces took ~8 minutes; a Pi 4 takes ~6-10 s, estimate).
SLOW_RUN_S = 15.0
# Past this many seconds of measuring, the levers not yet tried keep their planned values: a
# slow board's first start must not grow without bound (docs/PERFORMANCE.md).
BUDGET_S = 60.0
# A host whose warm-up pass (8 phonemes, the first a loaded engine runs) takes longer than this
# is many times slower than real time: QEMU emulating a Pi 5 (~45 s, RTF ~90), estimate for a
# Pi 4 ~0.5-1 s.  Timing candidates there would take many minutes and no plan would make it
# speak in time, so it keeps the plan as predicted (the first candidate's graph is built anyway).
TOO_SLOW_WARM_UP_S = 10.0
MARGIN = 0.05  # a candidate must be this much faster than the planned value to replace it
CHOICE_PREFIX = "plan-"
KEEP_CHOICES = 4
CHOICE_VERSION = 1


@dataclass(frozen=True)
class Guard:
    """Quality a candidate must keep against the fp32 lowering, on the same durations.

    Thresholds from corpus measurements (docs/PERFORMANCE.md sections 3 and 7): int8
    convolutions with calibrated channel gains, which keep fp32's word error rate, measured
    14-16 dB waveform SNR and 5.6 dB log-spectral distance; the lowerings that raised it
    (int8 without channel gains: WER +0.028 at 9.1 dB; ORT's static quantization: WER 2-4x at
    7.8 dB) were farther than 7 dB.
    """

    min_snr_db: float = 10.0
    max_lsd_db: float = 7.0

    def verdict(self, snr: float, lsd: float) -> str:
        """'' when the figures pass, else why not."""
        if not (math.isfinite(lsd) and snr == snr):  # NaN: the audio is not comparable
            return "audio not comparable"
        if snr < self.min_snr_db:
            return f"SNR {snr:.1f} dB below {self.min_snr_db:g}"
        if lsd > self.max_lsd_db:
            return f"log-spectral distance {lsd:.1f} dB above {self.max_lsd_db:g}"
        return ""


@dataclass(frozen=True)
class Candidates:
    """Per lever, the values the memory plan allows (the planned value first)."""

    conv: tuple[str, ...]
    threads: tuple[int, ...]
    passes: tuple[int, ...]

    @classmethod
    def from_dict(cls, values: dict[str, Iterable[Any]]) -> Candidates:
        """From the host plan's ``tune`` field (lists of values)."""
        return cls(
            tuple(str(v) for v in values["conv"]),
            tuple(int(v) for v in values["threads"]),
            tuple(int(v) for v in values["passes"]),
        )

    @property
    def levers(self) -> int:
        """How many candidates beyond the planned one (0: nothing to measure)."""
        return sum(len(v) - 1 for v in (self.conv, self.threads, self.passes))


@dataclass
class Trial:
    """One candidate's figures: its fastest run and its quality against fp32."""

    conv: str
    threads: int
    passes: int
    rtf: float  # compute seconds per second of audio, the fastest of TIMING_RUNS
    snr_db: float | None = None  # None: not compared (the reference itself, or conv forced)
    lsd_db: float | None = None
    rejected: str = ""  # why the guard refused it ('' = passed)

    def label(self) -> str:
        return f"conv {self.conv}, {self.threads} threads, {self.passes} at once"


@dataclass
class Choice:
    """The measured plan: the options chosen, every trial, and what it cost."""

    conv: str
    threads: int
    passes: int
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0  # the measurement's cost (first start only)
    # "measured" now, "reused" from the cache, "fixed" (nothing to try)
    status: str = "measured"
    untimed: str = ""  # why nothing was timed (a host too slow to time), '' when it was

    def apply(self, options: EngineOptions) -> EngineOptions:
        """``options`` with the chosen levers, and why."""
        reasons = {**options.reasons, **self.reasons()}
        return replace(
            options, conv=self.conv, threads=self.threads, passes=self.passes, reasons=reasons
        )

    def reasons(self) -> dict[str, str]:
        if self.status == "fixed":
            return {}
        if self.untimed:
            return {"conv": f"{self.conv}: as planned, not timed on this host: {self.untimed}"}
        best = next((t for t in self.trials if self._is(t)), None)
        figures = "; ".join(_trial_text(t) for t in self.trials)
        why = f"measured on this host ({self.status}): {figures}"
        rtf = f", RTF {best.rtf:.3f}" if best else ""
        return {
            "conv": f"{self.conv}: fastest that passed the quality guard{rtf}; {why}",
            "threads": f"{self.threads}: measured fastest here{rtf}",
            "passes": f"{self.passes}: measured fastest here{rtf}",
        }

    def _is(self, trial: Trial) -> bool:
        return (trial.conv, trial.threads, trial.passes) == (self.conv, self.threads, self.passes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        head = (
            f"plan {self.status}: conv {self.conv}, {self.threads} threads, {self.passes} at once"
        )
        if self.status == "measured":
            head += f" (measuring took {self.seconds:.1f} s)"
        if self.untimed:
            head += f"; not timed: {self.untimed}"
        return head + "".join(f"; {_trial_text(t)}" for t in self.trials)


def _trial_text(t: Trial) -> str:
    quality = ""
    if t.snr_db is not None and t.lsd_db is not None:
        quality = f", SNR {t.snr_db:.1f} dB, LSD {t.lsd_db:.1f} dB"
    refused = f", refused: {t.rejected}" if t.rejected else ""
    return f"{t.label()}: RTF {t.rtf:.3f}{quality}{refused}"


# ----------------------------------------------------------------------------- the cache


def choice_path(
    cache_dir: Path,
    model_path: Path,
    base: EngineOptions,
    candidates: Candidates,
    guard: Guard | None = None,
) -> Path:
    """Where the choice for this file, host, graph, candidate set and guard is kept."""
    inputs = graph_cache.cache_inputs(model_path, base)
    inputs["tune"] = {
        "candidates": asdict(candidates),
        "guard": asdict(guard or Guard()),
        "version": CHOICE_VERSION,
        "source": graph_cache._sources_hash((Path(__file__).resolve(),)),
    }
    return cache_dir / f"{CHOICE_PREFIX}{graph_cache._digest(inputs)[:32]}.json"


def cached_choice(path: Path) -> Choice | None:
    """The choice an earlier start measured, or None (missing or unreadable: measure again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        trials = [Trial(**t) for t in data.pop("trials")]
        choice = Choice(**data, trials=trials)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as err:
        _LOG.warning("measured plan %s unreadable (%s); measuring again", path, err)
        return None
    choice.status = "reused"
    return choice


def _save(path: Path, choice: Choice) -> None:
    tmp = path.with_name(f"{graph_cache.TMP_PREFIX}{path.stem}-{uuid.uuid4().hex[:8]}.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(choice.as_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _LOG.warning("measured plan not saved (%s); the next start measures again", err)
        return
    others = sorted(
        (p for p in path.parent.glob(f"{CHOICE_PREFIX}*.json") if p != path),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP_CHOICES - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()


# ----------------------------------------------------------------------------- measuring


def choose(
    model_path: Path,
    base: EngineOptions,
    candidates: Candidates,
    cache_dir: Path,
    guard: Guard | None = None,
    voices: str | os.PathLike[str] | None = None,
) -> Choice:
    """The options to run with: cached from an earlier start, or measured now (and cached).

    ``base`` carries everything not tuned (linear, weights, pass length...); its conv, threads
    and passes are the plan's and must be the candidates' first values."""
    planned = Choice(candidates.conv[0], candidates.threads[0], candidates.passes[0])
    if candidates.levers == 0:
        planned.status = "fixed"
        return planned
    guard = guard or Guard()
    path = choice_path(cache_dir, model_path, base, candidates, guard)
    found = cached_choice(path)
    if found is not None:
        return found
    started = time.perf_counter()
    choice = _measure(model_path, base, candidates, cache_dir, guard, voices)
    choice.seconds = round(time.perf_counter() - started, 2)
    _save(path, choice)
    return choice


def select(trials: list[Trial], prefer: Trial) -> Trial:
    """The fastest trial the guard passed (the reference always does); ``prefer`` (the planned
    value) unless another is faster by more than MARGIN, and among others within MARGIN of the
    fastest the first in the trials' order (the candidates' order: int8s before int8).  A shared
    CPU's noise should not flip a lever back and forth between hosts of one kind (int8 timed 2%
    faster than int8s once here, though it is 1.1x slower per pass in interleaved runs)."""
    passed = [t for t in trials if not t.rejected]
    fastest = min(t.rtf for t in passed)
    near = [t for t in passed if t.rtf <= fastest * (1 + MARGIN)]
    return prefer if prefer in near else near[0]


class _Bench:
    """Loads candidates one at a time from the cache and times them on the same text."""

    def __init__(self, model_path: Path, base: EngineOptions, cache_dir: Path, voices) -> None:
        self.model_path, self.base, self.cache_dir, self.voices = (
            model_path,
            base,
            cache_dir,
            voices,
        )
        self.voice = ""
        self.tokens: np.ndarray | None = None
        self.style: np.ndarray | None = None
        self.warm_up_s = 0.0  # the first engine's warm-up pass

    def load(self, conv: str, threads: int, passes: int) -> Engine:
        options = replace(self.base, conv=conv, threads=threads, passes=passes)
        engine = Engine.load(
            self.model_path, options, self.cache_dir, warm_up=False, voices=self.voices
        )
        started = time.perf_counter()
        engine.warm_up()
        if self.tokens is None:
            self.warm_up_s = time.perf_counter() - started
            self._prepare(engine)
        return engine

    def too_slow(self) -> str:
        """Why this host is too slow to time ('' when it is not), from the first warm-up."""
        if self.warm_up_s <= TOO_SLOW_WARM_UP_S:
            return ""
        return (
            f"the warm-up pass took {self.warm_up_s:.1f} s (over {TOO_SLOW_WARM_UP_S:g} s: an "
            "emulator, or a board far slower than real time); the plan is kept as predicted"
        )

    def _prepare(self, engine: Engine) -> None:
        """The guard's tokens and style, and the timing voice: the file's first voice."""
        names = list(engine.voices)
        self.voice = next((n for n in names if n.startswith("af_")), names[0])
        phonemizer = Phonemizer(engine.model.phoneme_to_id)
        language = "en-us"
        ids = phonemizer.ids(phonemizer.phonemize(GUARD_TEXT, language))
        self.tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        pack = np.asarray(engine.model.voice_tensor(self.voice), dtype=np.float32)
        self.style = pack[min(len(ids), len(pack)) - 1].reshape(1, -1)

    def rtf(self, engine: Engine) -> float:
        """Compute seconds per second of audio on TIMING_TEXT, the fastest of TIMING_RUNS; a
        run past SLOW_RUN_S counts the pieces done by then."""
        best = math.inf
        for _ in range(TIMING_RUNS):
            started = time.perf_counter()
            samples = 0
            for audio in engine.synthesize(TIMING_TEXT, self.voice):
                samples += len(audio)
                if time.perf_counter() - started > SLOW_RUN_S:
                    break
            took = time.perf_counter() - started
            best = min(best, took / max(samples / engine.sample_rate, 1e-3))
            if took > SLOW_RUN_S:
                break
        return round(best, 4)

    def audio(self, engine: Engine, durations: np.ndarray | None) -> np.ndarray:
        """The guard sentence's audio, on the given durations (the reference's)."""
        assert self.tokens is not None and self.style is not None
        return engine.run_tokens(self.tokens, self.style, 1.0, durations=durations)


def _measure(
    model_path: Path,
    base: EngineOptions,
    candidates: Candidates,
    cache_dir: Path,
    guard: Guard,
    voices,
) -> Choice:
    bench = _Bench(model_path, base, cache_dir, voices)
    started = time.perf_counter()
    trials = _conv_trials(bench, candidates, guard, started)
    if not trials:
        planned = (candidates.conv[0], candidates.threads[0], candidates.passes[0])
        return Choice(*planned, untimed=bench.too_slow())
    planned = trials[0]
    winner = select(trials, planned)
    if winner is not planned and not planned.rejected and time.perf_counter() - started < BUDGET_S:
        _retime(bench, planned)  # a burst of other work during its runs must not decide alone
        winner = select(trials, planned)
    for n in candidates.threads[1:]:
        if time.perf_counter() - started < BUDGET_S:
            trials.append(_timed(bench, winner, winner.conv, n, 1))
    winner = select(trials, winner)
    for n in (p for p in candidates.passes if p != 1):
        if time.perf_counter() - started < BUDGET_S:
            trials.append(_timed(bench, winner, winner.conv, winner.threads, n))
    at_planned = [t for t in trials if t.passes == candidates.passes[0] and not t.rejected]
    if not at_planned:  # out of time before passes were tried: they keep the planned value
        return Choice(winner.conv, winner.threads, candidates.passes[0], trials)
    best = select(trials, min(at_planned, key=lambda t: t.rtf))
    return Choice(best.conv, best.threads, best.passes, trials)


def _conv_trials(
    bench: _Bench, candidates: Candidates, guard: Guard, started: float
) -> list[Trial]:
    """The convolution types at the planned threads, one pass.  The planned type first (its
    graph is built anyway), another only within the budget (a slow board, or QEMU, keeps the
    plan's); each judged against fp32's audio, all on the first engine's durations."""
    threads = candidates.threads[0]
    trials: list[Trial] = []
    audios: dict[str, np.ndarray] = {}
    durations = None
    for conv in candidates.conv:
        if trials and time.perf_counter() - started > BUDGET_S:
            break
        engine = bench.load(conv, threads, 1)
        if bench.too_slow():
            return []
        trials.append(Trial(conv, threads, 1, bench.rtf(engine)))
        if len(candidates.conv) > 1 and (audios or time.perf_counter() - started <= BUDGET_S):
            if durations is None:
                durations = engine.durations(bench.tokens, bench.style)
            audios[conv] = bench.audio(engine, durations)
        del engine
        gc.collect()
    reference = audios.get("fp32")
    for trial in trials:
        if reference is not None and trial.conv != "fp32" and trial.conv in audios:
            trial.snr_db = round(snr_db(reference, audios[trial.conv]), 2)
            trial.lsd_db = round(log_spectral_distance(reference, audios[trial.conv]), 2)
            trial.rejected = guard.verdict(trial.snr_db, trial.lsd_db)
    return trials


def _timed(bench: _Bench, quality: Trial, conv: str, threads: int, passes: int) -> Trial:
    """A trial on the graph ``quality`` judged (same convolutions): only its speed is new."""
    engine = bench.load(conv, threads, passes)
    trial = Trial(conv, threads, passes, bench.rtf(engine), quality.snr_db, quality.lsd_db)
    del engine
    gc.collect()
    return trial


def _retime(bench: _Bench, trial: Trial) -> None:
    """Time a losing planned candidate once more; its fastest run counts."""
    engine = bench.load(trial.conv, trial.threads, trial.passes)
    trial.rtf = min(trial.rtf, bench.rtf(engine))
    del engine
    gc.collect()
