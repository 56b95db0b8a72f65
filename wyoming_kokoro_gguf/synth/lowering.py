"""The engine's options: how GGUF tensors become ONNX Runtime operators, and how the sessions run.

Why a separate object: the same graph builder serves a Raspberry Pi and an AVX-512 desktop;
only the choices below differ, and the host plan (host/plan.py) fills them in with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from wyoming_kokoro_gguf.weights.layout import MAX_PHONEMES

LINEAR_CHOICES = ("fp32", "matmulnbits")
CONV_CHOICES = ("fp32", "int8", "int8s")
WEIGHT_CHOICES = ("fp32", "int8")
STFT_CHOICES = ("op", "conv")
MAX_PASSES = 8  # most model passes of one text computing at once (EngineOptions.passes)


def is_int8(conv: str) -> bool:
    """Whether a ``conv`` choice runs int8 convolutions (dynamic "int8" or static "int8s")."""
    return conv in ("int8", "int8s")


@dataclass(frozen=True)
class EngineOptions:
    """Per group of tensors, how they are lowered; the ORT session options; pass lengths.

    linear: "fp32" dequantizes every Linear weight to a MatMul; "matmulnbits" keeps GGUF
        Q4_0/Q8_0 Linear blocks as com.microsoft MatMulNBits (4/8-bit, block 32, the GGUF block
        size), other types still go to fp32 MatMul.
    conv: "fp32" (Conv with fused bias); "int8" runs the decoder's and generator's residual
        convolutions (~90% of the MACs) as int8 dot products: per-channel int8 weights,
        activations quantized per call, output ranges and per-channel gains calibrated at load
        (graph/layers.py, build._calibrate_int8).  Fast where the CPU has int8 dot products
        (VNNI, Arm dotprod): ~1.45x faster here (2 threads); audio ~15-16 dB waveform SNR and
        ~5.6 dB log-spectral distance from fp32 (kokoro-onnx's int8 export: 6-12 dB LSD from
        its fp32), the same ASR word error rate on the benchmark's 12 sentences.  "int8s": the
        same convolutions with static activation quantization: each one's input and output
        scales calibrated at load over several voices (80% of the extremes seen: louder values
        clip) and built into the graph as constants with an int32 bias, so no per-call
        quantization; the decoder's first of them, the one static scales hurt most, stays
        fp32 (graph/layers.py STATIC_FLOAT_CONVS; docs/PERFORMANCE.md section 9, "Levers").
    weights: how the weights the two choices above leave in fp32 are stored (the AdaIN style
        projections, the 1x1 and upsampling convolutions, the LSTMs, ALBERT where the file's
        Linear weights are not 8-bit; with fp32 convolutions also the decoder's): "fp32", or
        "int8" with a scale per row, dequantized by each call (graph/builder.py).  Measured
        through the server: 74 MiB less once ready and 164 less at a first start with int8
        convolutions, 174 and 411 with fp32 ones, at the same speed; ASR word error rate on 65
        home-automation sentences +0.002 to +0.016 (docs/PERFORMANCE.md section 6).
    threads: intra-op threads for ONNX Runtime (0 = all cores).
    allow_spinning: ORT's busy-wait between ops; off by default because a Home Assistant box
        shares its CPU (spinning burned 5-7% CPU per call at equal speed, docs/PERFORMANCE.md
        section 7).
    rewrites: run the decoder/generator with numerically exact rewrites (height-1 2-D convs,
        InstanceNormalization, multiply by 1/sqrt 2) instead of the reference export's op
        sequence.  Same maths, other rounding: audio ~109 dB SNR from the fp32 export instead of
        ~125 dB (the F0 path always follows the reference exactly); 1.2-1.3x faster here (2
        threads, interleaved runs, tests/test_engine.py sentences), kokoro-pi measured 1.35x
        on a Pi 5.
    max_phonemes: longest model pass (at most Kokoro's MAX_PHONEMES); lower caps the activation memory
        of one pass (about 1 s of audio per 12 phonemes) on small hosts.
    mem_arena: ORT's CPU arena keeps activation buffers between passes (a little faster);
        off hands them back after each pass (memory-tight hosts; the engine process then also
        has glibc return large freed blocks at once, or its heap keeps them instead).
    stft: the source's STFT as ONNX's STFT op ("op": one single-threaded DFT per frame, ~6% of
        an int8 pass, the reference export's rounding) or a strided convolution with the DFT
        basis ("conv": multi-threaded, same maths).  Where the source is silent (unvoiced
        frames) its phases are rounding noise, so "conv" renders those frames differently:
        ~5 dB log-spectral distance from "op" in fp32.  The host plan runs "conv" (host/plan.py
        STFT_REASON), at the op's word error rate (docs/PERFORMANCE.md section 9).
    passes: model passes of one text run at once after its first (which runs alone, for the
        first audio).  A pass leaves cores idle in its single-threaded ops (Cos/Sin, STFT,
        norms: ~30% of it), so two passes on the same sessions get ~1.3x more audio per
        second from 2 cores; each pass in flight holds its own activations.
    reasons: why each choice was made (for logs / the host report).
    """

    linear: str = "matmulnbits"
    conv: str = "fp32"
    weights: str = "fp32"
    threads: int = 0
    allow_spinning: bool = False
    rewrites: bool = True
    max_phonemes: int = MAX_PHONEMES
    mem_arena: bool = True
    stft: str = "op"
    passes: int = 1
    reasons: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.linear not in LINEAR_CHOICES:
            raise ValueError(f"linear must be one of {LINEAR_CHOICES}, not {self.linear!r}")
        if self.conv not in CONV_CHOICES:
            raise ValueError(f"conv must be one of {CONV_CHOICES}, not {self.conv!r}")
        if not 16 <= self.max_phonemes <= MAX_PHONEMES:
            raise ValueError(
                f"max_phonemes must be within 16..{MAX_PHONEMES}, not {self.max_phonemes}"
            )
        if self.weights not in WEIGHT_CHOICES:
            raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, not {self.weights!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, not {self.threads}")
        if self.stft not in STFT_CHOICES:
            raise ValueError(f"stft must be one of {STFT_CHOICES}, not {self.stft!r}")
        if not 1 <= self.passes <= MAX_PASSES:
            raise ValueError(f"passes must be within 1..{MAX_PASSES}, not {self.passes}")

    def with_threads(self, threads: int) -> EngineOptions:
        """A copy with another thread count."""
        return replace(self, threads=threads)


def default_options() -> EngineOptions:
    """fp32 everywhere except GGUF Q4_0/Q8_0 Linear blocks, which stay packed (MatMulNBits)."""
    return EngineOptions(
        reasons={
            "linear": "Q4_0/Q8_0 Linear weights run packed in MatMulNBits (block 32 = GGUF block)",
            "conv": "fp32 convolutions: full quality on every host",
            "threads": "all cores",
            "allow_spinning": "off: do not burn CPU between calls on a shared host",
            "rewrites": "on: exact 2-D conv / InstanceNormalization forms, faster, same maths",
        }
    )
