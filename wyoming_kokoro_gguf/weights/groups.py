"""Tensor groups for per-group quantization: which weights share a type in a mixed file.

Why groups: quantization error costs differently in each part of Kokoro (the harmonic source
integrates F0 into a phase, ALBERT runs its one layer 12 times, the decoder is most of the
bytes), so ``convert --sensitivity`` measures each group alone and ``convert --type auto``
gives each group its own type.  A group holds the weights ``--quantize-all`` may quantize
(weight matrices, convolution kernels, AdaIN style projections); biases, norms, Snake alphas,
embeddings and voices keep the default policy's type.  Decoder and generator blocks are groups
of their own ("per block where it pays": they hold most of the bytes).
"""

from __future__ import annotations

import re

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from wyoming_kokoro_gguf.weights import layout, quants

T = GGMLQuantizationType

# Candidate types from the largest to the smallest per weight: "one step toward f16" is one
# step to the left.  Bits per weight: f16 16, q8_0 8.5, q5_0 5.5, q4_0 4.5, mxfp4 4.25,
# tq2_0 2.06, tq1_0 1.69 (ternary, "1.58-bit").
LADDER: tuple[str, ...] = ("f16", "q8_0", "q5_0", "q4_0", "mxfp4", "tq2_0", "tq1_0")
K_LADDER: tuple[str, ...] = ("q6_k", "q5_k", "q4_k")
# Types that store the same values as another: gguf packs the same ternary digits in TQ2_0's
# 2 bits as in TQ1_0's 1.6, so TQ2_0 costs what TQ1_0 costs in more room and is never chosen.
SAME_VALUES = {"tq2_0": "tq1_0"}

# (group, pattern on the name without "kokoro."), first match wins; AdaIN projections first.
_RULES: tuple[tuple[str, str], ...] = (
    ("adain.predictor", r"duration_predictor\..*(gamma|beta)\d?_weight$"),
    ("adain.decoder", r"decoder\.(encoder_block|decoder_blocks)\..*(gamma|beta)\d?_weight$"),
    ("adain.generator", r"decoder\.generator\..*(gamma|beta)\d?_weight$"),
    ("albert", r"albert\."),
    ("text_encoder.convs", r"text_encoder\.layers\."),
    ("text_encoder.lstm", r"text_encoder\.lstm"),
    ("predictor.projections", r"duration_predictor\.(encode|duration_proj)"),
    ("predictor.duration_lstms", r"duration_predictor\.(layers|duration_lstm)\."),
    ("predictor.shared_lstm", r"duration_predictor\.shared_lstm"),
    ("predictor.f0_n_convs", r"duration_predictor\.(f0_blocks|n_blocks)\."),
    ("decoder.encode", r"decoder\.encoder_block\."),
    ("decoder.decode.{0}", r"decoder\.decoder_blocks\.(\d+)\."),
    ("decoder.f0_n_asr", r"decoder\.(f0|n|asr)_conv"),
    ("generator.ups.{0}", r"decoder\.generator\.ups\.(\d+)\."),
    ("generator.resblocks.{0}", r"decoder\.generator\.resblocks\.(\d+)\."),
    ("generator.noise.{0}", r"decoder\.generator\.noise_blocks\.(\d+)\."),
    ("generator.source", r"decoder\.generator\.m_source"),
    ("generator.conv_post", r"decoder\.generator\.conv_post"),
)


def is_assignable(name: str) -> bool:
    """Whether a group's type applies to the tensor (the ``--quantize-all`` set)."""
    return (
        layout.is_ttscpp_quantizable(name)
        or layout.is_decoder_conv_weight(name)
        or layout.is_extra_quantizable(name)
    )


def group_of(name: str) -> str | None:
    """The group a tensor belongs to, or None for tensors no group's type applies to."""
    if not name.startswith(layout.PREFIX) or not is_assignable(name):
        return None
    rest = name[len(layout.PREFIX) :]
    for group, pattern in _RULES:
        m = re.match(pattern, rest)
        if m:
            return group.format(*m.groups()) if "{0}" in group else group
    return None


def groups(names: list[str]) -> dict[str, list[str]]:
    """Group -> its tensor names, in file order."""
    out: dict[str, list[str]] = {}
    for name in names:
        g = group_of(name)
        if g is not None:
            out.setdefault(g, []).append(name)
    return out


def choose(name: str, shape: tuple[int, ...], group_type: GGMLQuantizationType) -> quants.Choice:
    """The stored type of a tensor whose group gets ``group_type``; a row that does not fit
    the type's block is stored with rows of several whole channels (``--quantize-all``'s
    rule; never the matrices TTS.cpp quantizes, whose shapes tell a reader the model's sizes),
    else the next type up the ladder that fits (an LSTM's 640-wide rows: TQ1_0 -> MXFP4),
    else F16."""
    if group_type in (T.F32, T.F16) or len(shape) < 2:
        return quants.choose(name, shape, group_type)
    n = int(np.prod(shape[1:]))
    may_group = not layout.is_ttscpp_quantizable(name)
    for t in _ladder_from(group_type):
        bs = quants.block_size(t)
        if t == T.F16:
            break
        if n % bs == 0:
            return quants.Choice(t, (shape[0], n), "" if t == group_type else f"{t.name}: row {n}")
        grouped = quants._grouped_rows(shape, bs) if may_group else None
        if grouped is not None:
            return quants.Choice(t, grouped, f"stored as {list(grouped)}")
    return quants.Choice(T.F16, shape, f"row of {n} fits no block type; kept F16")


def _ladder_from(t: GGMLQuantizationType) -> list[GGMLQuantizationType]:
    """``t`` then the types above it, up to F16 (K-quants fall back to their legacy type)."""
    if t in quants.K_QUANTS:
        return [t, *_ladder_from(quants.K_FALLBACK[t])]
    names = [quants.TYPE_NAMES[n] for n in LADDER]
    return list(reversed(names[: names.index(t) + 1]))


def stored_bytes(choice: quants.Choice) -> int:
    """Bytes of a tensor stored as ``choice``."""
    n = int(np.prod(choice.stored_shape))
    if choice.qtype == T.F32:
        return 4 * n
    if choice.qtype == T.F16:
        return 2 * n
    bs, ts = GGML_QUANT_SIZES[choice.qtype]
    return n // bs * ts


def group_bytes(
    shapes: dict[str, tuple[int, ...]], names: list[str], qtype: GGMLQuantizationType
) -> int:
    """Bytes of a group's tensors at ``qtype``."""
    return sum(stored_bytes(choose(n, shapes[n], qtype)) for n in names)
