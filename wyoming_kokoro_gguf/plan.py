"""Host plan: from a host profile, decide the GGUF variant, the lowering, threads and cache size.

Every decision carries a one-line reason so the log (and ``python -m wyoming_kokoro_gguf.probe``)
explains why a Pi 4 and a desktop run the same model differently.

Where the figures come from (DESIGN.md section 1 unless said otherwise):
- fp32 graph on the 2-core AVX-512 VNNI x86 machine: RTF 0.68-0.71 with 1 thread, ~0.39 with 2.
- int8 convolutions: 1.7-1.8x faster than fp32 with 2 threads (~2x with 1) on that machine, and
  1.8-2x on a Pi 5 (kokoro-pi), at a quality cost (ASR WER 0.9% -> 2.7-3.6%).
- kokoro-pi on a Pi 5: RTF 0.45 with graph rewrites (1.35x) and int8 dot-product convs (1.8-2x).
- Published file sizes: f32 351, f16 202, q8_0 186, q5_0 180, q4_0 178 MB; TTS.cpp quantizes only
  ~17M of the 82M weights (ALBERT, LSTMs, projections), the decoder/generator stay F16/F32.
- Memory, measured here with the kokoro-onnx int8 export on ONNX Runtime 1.31 (one thread,
  VmRSS/VmHWM from /proc/self/status): Python + numpy + onnxruntime + phonemizer + espeak-ng +
  wyoming + aiohttp imported = 69 MiB; peak grows ~24 MiB per second of audio produced in one
  pass (202 MiB after load -> 437 MiB for a 10.9 s pass, 669 MiB for 19.6 s).
Estimates that are not measurements are marked "estimate" where they are used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .host import HostProfile

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

BASE_RUNTIME_MB = 70  # measured: interpreter + libraries imported (see module docstring)
PARAMS_CONV_M = 65.0  # decoder, generator, text-encoder convs, AdaIN blocks (82M - 17M)
PARAMS_LSTM_M = 10.8  # 5 biLSTMs of Kokoro (text encoder, 3 duration encoder, predictor, shared)
PARAMS_MATMUL_M = 6.7  # ALBERT (6.3M, one shared layer) + bert_encoder + projections
VOICES_MB = 27  # 50 voices x 510 x 256 float32
INT8_CONV_BYTES_PER_PARAM = (
    1.3  # int8 weights + per-channel scales + ~12 convs kept fp32 (estimate)
)
ACT_MB_PER_AUDIO_S = 24  # measured (module docstring)
TOKENS_PER_AUDIO_S = (
    15  # Kokoro tokens (IPA symbols, stress marks, spaces) per second of speech (estimate)
)
MAX_PHONEMES = 510  # Kokoro's longest pass
MIN_PHONEMES = (
    100  # below this a pass is shorter than a typical clause (~6 s): quality of phrasing suffers
)
MEMORY_MARGIN = 0.15  # predicted peak must stay under available / (1 + margin)
COMFORTABLE_SHARE = 0.5  # "plenty of memory": predicted peak under half of what is available
MAX_THREADS = (
    8  # more threads barely help a pass this size (estimate, not measured: 2-core machine)
)
THREAD_EFFICIENCY = 0.8  # measured: 2 threads gave 0.70/0.39 = 1.8x over one thread
INT8_CONV_SPEEDUP = 1.75  # measured 1.7-1.8x (2 threads, x86); kokoro-pi 1.8-2x on a Pi 5
TARGET_RTF = 0.5  # below this fp32 keeps up comfortably: streaming stays ahead of playback
CACHE_MB_PER_AUDIO_S = 24000 * 2 / (1 << 20)  # 24 kHz 16-bit mono: ~21 s of audio per MB

# Single-thread fp32 real-time factor by core class.
CORE_CLASSES: dict[str, tuple[float, str]] = {
    "x86-avx512": (0.70, "measured here: 0.68-0.71 with 1 thread (Xeon, AVX-512)"),
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
    conv: str  # "fp32" | "int8"
    threads: int
    inter_op_threads: int
    allow_spinning: bool
    mem_arena: bool
    max_phonemes: int
    cache_mb: float
    predicted_peak_mb: int
    predicted_load_peak_mb: int
    available_mb: int
    predicted_rtf: float
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model_path: str | None = None
    fetch: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lowering(self) -> Any:
        """The engine's LoweringPlan (lowering.py, helper B) built from this plan."""
        from .lowering import LoweringPlan

        keys = ("linear", "conv", "threads", "allow_spinning")
        return LoweringPlan(
            linear=self.linear,
            conv=self.conv,
            threads=self.threads,
            allow_spinning=self.allow_spinning,
            reasons={k: self.reasons[k] for k in keys if k in self.reasons},
        )

    def session_options(self) -> Any:
        """onnxruntime.SessionOptions for this plan (threads, no spinning, arena)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = self.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_cpu_mem_arena = self.mem_arena
        spin = "1" if self.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return so

    def summary(self) -> str:
        """One line for the log."""
        linear = f"matmulnbits({self.linear_bits}-bit)" if self.linear == "matmulnbits" else "fp32"
        return (
            f"model {self.variant}, linear {linear}, conv {self.conv}, {self.threads} threads, "
            f"max {self.max_phonemes} phonemes/pass, cache {self.cache_mb:g} MB, predicted peak "
            f"{self.predicted_peak_mb} of {self.available_mb} MB, RTF ~{self.predicted_rtf:.2f}"
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


def predict_rtf(profile: HostProfile, threads: int, conv: str) -> tuple[float, str]:
    """Real-time factor estimate (seconds of compute per second of audio) and its basis."""
    rtf_1t, basis = CORE_CLASSES[core_class(profile)]
    speedup = 1 + THREAD_EFFICIENCY * (max(threads, 1) - 1)
    rtf = rtf_1t / speedup
    if conv == "int8" and profile.int8_dot:
        rtf /= INT8_CONV_SPEEDUP  # without VNNI/dotprod no gain is assumed
    return rtf, basis


def _weights_mb(linear_type: str, linear: str, conv: str) -> float:
    conv_mb = PARAMS_CONV_M * (INT8_CONV_BYTES_PER_PARAM if conv == "int8" else 4.0)
    lstm_mb = PARAMS_LSTM_M * 4.0  # ORT's LSTM takes fp32 weights
    bits = MATMULNBITS_BITS.get(linear_type) if linear == "matmulnbits" else None
    # MatMulNBits stores the packed block plus one fp32... fp16 scale per 32 weights.
    matmul_mb = PARAMS_MATMUL_M * ((bits + 0.5) / 8 if bits else 4.0)
    return conv_mb + lstm_mb + matmul_mb


def predict_memory(
    linear_type: str, linear: str, conv: str, max_phonemes: int, cache_mb: float = 0.0
) -> tuple[int, int]:
    """(peak while serving, peak while loading) in MB for one configuration.

    Loading holds the new initializers and the arrays they were made from at once (estimate:
    one extra copy of the weights); serving adds one pass's activations and the phrase cache.
    """
    weights = _weights_mb(linear_type, linear, conv)
    resident = BASE_RUNTIME_MB + VOICES_MB + weights
    activations = ACT_MB_PER_AUDIO_S * max_phonemes / TOKENS_PER_AUDIO_S
    serving = resident + activations + cache_mb
    loading = resident + weights
    return math.ceil(serving), math.ceil(loading)


def _budget(available: int) -> float:
    return available / (1 + MEMORY_MARGIN)


def _phonemes_for(budget: float, resident_mb: float) -> int:
    room = budget - resident_mb
    n = int(room / ACT_MB_PER_AUDIO_S * TOKENS_PER_AUDIO_S)
    return min(MAX_PHONEMES, n // 10 * 10)


def parse_quant(quant: str | None) -> dict[str, str]:
    """--quant: 'auto', 'fp32', 'int8', or 'conv=int8,linear=fp32' style pairs."""
    quant = (quant or "auto").strip().lower()
    if quant in ("", "auto"):
        return {}
    if quant == "fp32":
        return {"conv": "fp32", "linear": "fp32"}
    if quant == "int8":
        return {"conv": "int8"}
    if quant in ("matmulnbits", "nbits"):
        return {"linear": "matmulnbits"}
    result: dict[str, str] = {}
    allowed = {"conv": ("fp32", "int8"), "linear": ("fp32", "matmulnbits")}
    for item in quant.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in allowed or value not in allowed[key]:
            raise PlanError(
                f"--quant {quant!r} not understood: use auto, fp32, int8, or pairs like "
                "conv=int8,linear=matmulnbits (conv: fp32|int8, linear: fp32|matmulnbits)"
            )
        result[key] = value
    return result


def parse_threads(threads: str | int | None) -> int | None:
    """--threads: 'auto' (None) or a positive number."""
    if threads is None:
        return None
    text = str(threads).strip().lower()
    if text in ("", "auto", "0"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise PlanError(f"--threads {threads!r}: give 'auto' or a number of threads >= 1")
    return int(text)


def cache_size_mb(available_mb: float, peak_mb: float) -> tuple[float, str]:
    """Phrase cache size: 5% of the headroom left after the predicted peak, 2..64 MB."""
    headroom = max(_budget(int(available_mb)) - peak_mb, 0)
    size = float(min(64, max(2, round(headroom * 0.05))))
    seconds = size / CACHE_MB_PER_AUDIO_S
    return size, (
        f"{size:g} MB (~{seconds / 60:.0f} min of 24 kHz audio): 5% of the {headroom:.0f} MB left "
        "after the predicted peak, kept between 2 and 64 MB"
    )


def make_plan(
    profile: HostProfile,
    *,
    model: str = "auto",
    local_variants: dict[str, str] | None = None,
    model_path: str | None = None,
    path_variant: str | None = None,
    quant: str | None = "auto",
    threads: str | int | None = "auto",
) -> Plan:
    """Decide variant, lowering, threads and cache for this host.

    model: 'auto' or a variant name (f32, f16, q8_0, q5_0, q4_0).
    local_variants: variant name -> path of files already on disk (auto prefers them).
    model_path/path_variant: an explicit file (--model PATH) and the variant it was found to be
        ('custom' when unknown); the plan then only decides how to run it.
    """
    reasons: dict[str, str] = {}
    warnings: list[str] = []
    overrides = parse_quant(quant)
    local_variants = dict(local_variants or {})
    available = profile.effective_mem_available_mb
    budget = _budget(available)

    # Threads ------------------------------------------------------------------------
    forced_threads = parse_threads(threads)
    if forced_threads is not None:
        n_threads = forced_threads
        reasons["threads"] = f"{n_threads}: set with --threads"
        if n_threads > profile.usable_cores:
            warnings.append(
                f"--threads {n_threads} is more than the {profile.usable_cores} usable cores: "
                "threads will wait for each other"
            )
    else:
        n_threads = max(1, min(profile.usable_cores, MAX_THREADS))
        capped = (
            " (capped at 8: longer passes would be needed to use more)"
            if (profile.usable_cores > MAX_THREADS)
            else ""
        )
        reasons["threads"] = f"{n_threads}: one per usable core{capped}"
    reasons["allow_spinning"] = (
        "off: ORT's busy-wait burned 5-7% CPU per call at equal speed, and this box is shared"
    )
    reasons["inter_op_threads"] = "1: the graph is one chain of ops, run sequentially"

    # Speed: fp32 or int8 convolutions -------------------------------------------------
    rtf_fp32, basis = predict_rtf(profile, n_threads, "fp32")
    rtf_int8, _ = predict_rtf(profile, n_threads, "int8")
    cls = core_class(profile)
    if "conv" in overrides:
        conv = overrides["conv"]
        reasons["conv"] = f"{conv}: set with --quant"
    elif profile.int8_dot and rtf_fp32 > TARGET_RTF:
        conv = "int8"
        dot = ", ".join(
            f
            for f in profile.features
            if f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
        )
        reasons["conv"] = (
            f"int8: fp32 would run at RTF ~{rtf_fp32:.2f} here ({cls}), int8 dot products "
            f"({dot}) make it ~{rtf_int8:.2f}; costs some clarity (ASR WER 0.9% -> ~3%)"
        )
    elif profile.int8_dot:
        conv = "fp32"
        reasons["conv"] = (
            f"fp32: predicted RTF ~{rtf_fp32:.2f} keeps up without int8 (available: ~{rtf_int8:.2f}, "
            "at a clarity cost; --quant int8 to use it)"
        )
    else:
        conv = "fp32"
        reasons["conv"] = (
            f"fp32: no fast int8 dot products on this CPU ({cls}: no VNNI/dotprod), so int8 "
            "convolutions would not pay for their quality cost"
        )

    # Variant ----------------------------------------------------------------------------
    def linear_for(variant_linear_type: str) -> tuple[str, int | None, str]:
        if "linear" in overrides:
            mode = overrides["linear"]
            bits = MATMULNBITS_BITS.get(variant_linear_type) if mode == "matmulnbits" else None
            if mode == "matmulnbits" and bits is None:
                return (
                    "matmulnbits",
                    None,
                    (
                        f"matmulnbits (set with --quant) but {variant_linear_type} has no MatMulNBits "
                        "form: those weights run as fp32"
                    ),
                )
            return mode, bits, f"{mode}: set with --quant"
        bits = MATMULNBITS_BITS.get(variant_linear_type)
        if bits:
            return (
                "matmulnbits",
                bits,
                (
                    f"matmulnbits: the file's {variant_linear_type} Linear blocks run packed "
                    f"({bits}-bit MatMulNBits, block 32 = GGUF block), no re-quantization"
                ),
            )
        why = {
            "F32": "F32 weights",
            "F16": "F16 weights (ORT's CPU kernels compute fp16 as fp32 anyway)",
            "Q5_0": "Q5_0 has no MatMulNBits form; dequantized once at load",
        }.get(variant_linear_type, f"{variant_linear_type} weights dequantized at load")
        return "fp32", None, f"fp32: {why}"

    def fit(
        variant_linear_type: str, conv_choice: str
    ) -> tuple[str, int | None, str, int, int, int]:
        linear, bits, lin_reason = linear_for(variant_linear_type)
        serving, loading = predict_memory(variant_linear_type, linear, conv_choice, MAX_PHONEMES)
        return linear, bits, lin_reason, serving, loading, MAX_PHONEMES

    chosen: str
    explicit = model_path is not None or model != "auto"
    if model_path is not None:
        chosen = path_variant or "custom"
        reasons["variant"] = f"{chosen}: the file given with --model"
    elif model != "auto":
        if model not in VARIANTS:
            raise PlanError(
                f"unknown model variant {model!r}: use auto, {', '.join(VARIANT_NAMES)} or a .gguf path"
            )
        chosen = model
        reasons["variant"] = f"{chosen}: set with --model"
    else:
        chosen = ""
    linear_type = VARIANTS[chosen].linear_type if chosen in VARIANTS else "F16"

    if not explicit:
        f16 = fit("F16", conv)
        q8 = fit("Q8_0", conv)
        if f16[3] <= available * COMFORTABLE_SHARE and f16[4] <= budget:
            chosen = "f16"
            reasons["variant"] = (
                f"f16: plenty of memory (predicted peak {f16[3]} MB of {available} MB); same "
                "weights as f32 at 202 instead of 351 MB, and ORT computes in fp32 either way"
            )
        elif q8[3] <= budget and q8[4] <= budget:
            chosen = "q8_0"
            reasons["variant"] = (
                f"q8_0: memory is limited ({available} MB available): 8-bit Linear weights stay "
                "packed in RAM, near-lossless, 186 MB file"
            )
        else:
            chosen = "q4_0"
            reasons["variant"] = (
                f"q4_0: memory is tight ({available} MB available): the smallest file (178 MB) "
                "and 4-bit Linear weights"
            )
        # A file already on disk beats a download when it fits: no network, no wait.
        preferred = chosen
        local_ok = [
            v
            for v in sorted(
                local_variants, key=lambda v: VARIANTS[v].quality_rank if v in VARIANTS else 9
            )
            if fit(VARIANTS[v].linear_type if v in VARIANTS else "F16", conv)[3] <= budget
            or v == preferred
        ]
        if preferred in local_variants:
            chosen = preferred
        elif local_ok:
            chosen = local_ok[0]
            reasons["variant"] = (
                f"{chosen}: already on disk ({local_variants[chosen]}); the plan would fetch "
                f"{preferred} for this host (--model {preferred} to get it)"
            )
        linear_type = VARIANTS[chosen].linear_type if chosen in VARIANTS else "F16"

    linear, bits, lin_reason, serving, loading, _ = fit(linear_type, conv)
    reasons["linear"] = lin_reason
    max_phonemes = MAX_PHONEMES
    mem_arena = True
    reasons["max_phonemes"] = f"{MAX_PHONEMES}: Kokoro's longest pass; memory allows it"
    reasons["mem_arena"] = "on: ORT keeps its buffers between passes (faster, memory is ample)"

    # Memory levers when the peak does not fit: int8 convs, then shorter passes.
    if serving > budget or loading > budget:
        if conv == "fp32" and "conv" not in overrides:
            conv = "int8"
            reasons["conv"] = (
                f"int8: needed for memory (fp32 convolutions would peak at {serving} MB, "
                f"{available} MB available); costs some clarity (ASR WER 0.9% -> ~3%)"
                + ("" if profile.int8_dot else "; no speed gain without VNNI/dotprod")
            )
            serving, loading = predict_memory(linear_type, linear, conv, MAX_PHONEMES)
        mem_arena = False
        reasons["mem_arena"] = "off: give buffers back between passes on a memory-tight host"
        if serving > budget:
            resident = predict_memory(linear_type, linear, conv, 0)[0]
            max_phonemes = max(_phonemes_for(budget, resident), 0)
            serving, loading = predict_memory(linear_type, linear, conv, max_phonemes)
            reasons["max_phonemes"] = (
                f"{max_phonemes}: shorter passes (~{max_phonemes / TOKENS_PER_AUDIO_S:.0f} s of "
                f"audio) keep activations (~{ACT_MB_PER_AUDIO_S} MB per second) within memory"
            )
        if max_phonemes < MIN_PHONEMES or loading > budget:
            need = predict_memory(linear_type, linear, conv, MIN_PHONEMES)
            need_mb = math.ceil(max(need) * (1 + MEMORY_MARGIN))
            message = (
                f"not enough memory for Kokoro: {available} MB available, at least {need_mb} MB "
                f"needed (model {chosen}, int8 convolutions, {MIN_PHONEMES}-phoneme passes)"
            )
            if explicit:
                warnings.append(message + "; continuing because the model was chosen explicitly")
                max_phonemes = max(max_phonemes, MIN_PHONEMES)
                serving, loading = predict_memory(linear_type, linear, conv, max_phonemes)
            else:
                raise PlanError(message)
    cache_mb, cache_reason = cache_size_mb(available, serving)
    reasons["cache_mb"] = cache_reason
    serving = math.ceil(serving + cache_mb)

    rtf, _ = predict_rtf(profile, n_threads, conv)
    reasons["speed"] = f"predicted RTF ~{rtf:.2f} with {n_threads} threads ({cls}: {basis})"
    if rtf > 1.0:
        warnings.append(
            f"this CPU is predicted to synthesize slower than real time (RTF ~{rtf:.1f}): audio "
            "starts after the first clause but long answers finish late"
        )
    fetch = chosen not in local_variants and model_path is None
    return Plan(
        variant=chosen,
        linear=linear,
        linear_bits=bits,
        conv=conv,
        threads=n_threads,
        inter_op_threads=1,
        allow_spinning=False,
        mem_arena=mem_arena,
        max_phonemes=max_phonemes,
        cache_mb=cache_mb,
        predicted_peak_mb=serving,
        predicted_load_peak_mb=loading,
        available_mb=available,
        predicted_rtf=round(rtf, 3),
        reasons=reasons,
        warnings=warnings,
        model_path=model_path or local_variants.get(chosen),
        fetch=fetch,
    )
