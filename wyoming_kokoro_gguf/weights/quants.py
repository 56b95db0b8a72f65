"""Tensor types for the converter: which type each tensor gets, and quantizing it.

Default policy = TTS.cpp's quantizer (examples/quantize/quantize_impl.cpp) run with
``--convert-non-quantized-to-f16``: the tensors ``kokoro_is_quantizable`` accepts (ALBERT, the
LSTMs, the predictor's projections) get the requested type, the other "f16 compatible" weights
(decoder/generator convolutions, embeddings excepted) become F16, and biases, norms, AdaIN
gamma/beta, Snake alphas and voices stay F32.  That reproduces the published Kokoro_espeak_Q4 /
_Q5 / _Q8 sizes (178 / 180 / 186 MB against 202 MB for F16, docs/PERFORMANCE.md section 7),
which is only consistent with the non-quantizable weights stored as F16.

``quantize_convs`` additionally quantizes the decoder and generator convolution weights;
``quantize_all`` goes further (every weight matrix: also the text encoder's and the predictor's
convolutions and the AdaIN / AdaLayerNorm style projections; biases, norms, Snake alphas, the
embeddings and the voices keep their type) and stores convolutions whose row does not fit the block
with rows of several whole output channels (see ``_grouped_rows``).  GGML
blocks run along a tensor's first dimension (ne0), which for a conv weight [out, in, k] is k, so a
quantized conv weight is stored flattened to two dimensions, [out, in * k] (ConvTranspose
[in, out * k]); the reader restores the layout shape.  A tensor whose row is not a multiple of the
block size keeps F16, with the reason reported.

gguf-py quantizes Q4_0 / Q5_0 / Q8_0, MXFP4 (4-bit floats, block 32) and the ternary TQ2_0 /
TQ1_0 (block 256; ~2.06 and ~1.69 bits per weight), and F16; the engine dequantizes the types
its graph cannot run packed when it loads a file.  The K-quants come from the libggml that
llama-cpp-python bundles (``ggml_quantize_chunk`` through ctypes) when it is installed.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf import quants as gq

from wyoming_kokoro_gguf.weights import layout

T = GGMLQuantizationType

TYPE_NAMES: dict[str, GGMLQuantizationType] = {
    "f32": T.F32,
    "f16": T.F16,
    "q8_0": T.Q8_0,
    "q5_0": T.Q5_0,
    "q4_0": T.Q4_0,
    "mxfp4": T.MXFP4,
    "tq2_0": T.TQ2_0,
    "tq1_0": T.TQ1_0,
    "q6_k": T.Q6_K,
    "q5_k": T.Q5_K,
    "q4_k": T.Q4_K,
}
K_QUANTS = frozenset({T.Q4_K, T.Q5_K, T.Q6_K})
# When a row does not fit the K-quant super-block (256), fall back to the legacy type of about the
# same size (what llama.cpp does for such rows).
K_FALLBACK = {T.Q4_K: T.Q4_0, T.Q5_K: T.Q5_0, T.Q6_K: T.Q8_0}

FILE_TYPES = {
    T.F32: LlamaFileType.ALL_F32,
    T.F16: LlamaFileType.MOSTLY_F16,
    T.Q8_0: LlamaFileType.MOSTLY_Q8_0,
    T.Q5_0: LlamaFileType.MOSTLY_Q5_0,
    T.Q4_0: LlamaFileType.MOSTLY_Q4_0,
    T.MXFP4: LlamaFileType.MOSTLY_MXFP4_MOE,
    T.TQ2_0: LlamaFileType.MOSTLY_TQ2_0,
    T.TQ1_0: LlamaFileType.MOSTLY_TQ1_0,
    T.Q6_K: LlamaFileType.MOSTLY_Q6_K,
    T.Q5_K: LlamaFileType.MOSTLY_Q5_K_M,
    T.Q4_K: LlamaFileType.MOSTLY_Q4_K_M,
}


class QuantError(Exception):
    """A type cannot be produced here (one-line message)."""


def parse_type(name: str) -> GGMLQuantizationType:
    try:
        return TYPE_NAMES[name.lower()]
    except KeyError:
        raise QuantError(f"unknown type {name!r} (choose from {', '.join(TYPE_NAMES)})") from None


def block_size(qtype: GGMLQuantizationType) -> int:
    return GGML_QUANT_SIZES[qtype][0]


@dataclass(frozen=True)
class Choice:
    """The type chosen for one tensor, the 2-D row layout used to store it, and why."""

    qtype: GGMLQuantizationType
    stored_shape: tuple[int, ...]
    reason: str = ""


def _row_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape to quantize with: matrices as they are, conv weights flattened to [out, in*k]."""
    if len(shape) <= 2:
        return shape
    return (shape[0], int(np.prod(shape[1:])))


def _grouped_rows(shape: tuple[int, ...], bs: int) -> tuple[int, int] | None:
    """For ``--quantize-all``: a 2-D view [out / g, g * row] whose rows hold g whole output
    channels, with g the smallest count making the row a multiple of the block (None if out is not
    divisible by g).  Blocks may then span two channels; the values are unchanged."""
    n = int(np.prod(shape[1:]))
    g = math.lcm(n, bs) // n
    if shape[0] % g:
        return None
    return (shape[0] // g, g * n)


def choose(
    name: str,
    shape: tuple[int, ...],
    target: GGMLQuantizationType,
    quantize_convs: bool = False,
    quantize_all: bool = False,
) -> Choice:
    """Pick the stored type of one tensor (see the module docstring for the policy)."""
    if target == T.F32:
        return Choice(T.F32, shape)
    f16_ok = layout.is_f16_compatible(name)
    fallback = Choice(T.F16, shape) if f16_ok else Choice(T.F32, shape)
    if target == T.F16:
        return fallback
    wants = layout.is_ttscpp_quantizable(name)
    wants = wants or ((quantize_convs or quantize_all) and layout.is_decoder_conv_weight(name))
    wants = wants or (quantize_all and layout.is_extra_quantizable(name))
    if not wants or len(shape) < 2:
        return fallback
    row_shape = _row_shape(name, shape)
    n = row_shape[-1]
    qtype = target
    reason = ""
    can_group = quantize_all and not layout.is_ttscpp_quantizable(name)
    if qtype in K_QUANTS and n % block_size(qtype) and can_group:
        grouped = _grouped_rows(shape, block_size(qtype))
        if grouped is not None and grouped[1] // n <= 16:
            return Choice(
                qtype, grouped, f"stored as {list(grouped)} (rows of {grouped[1] // n} channels)"
            )
    if qtype in K_QUANTS and n % block_size(qtype):
        reason = (
            f"row of {n} is not a multiple of {block_size(qtype)}; {K_FALLBACK[qtype].name} instead"
        )
        qtype = K_FALLBACK[qtype]
    if n % block_size(qtype) and can_group:
        grouped = _grouped_rows(shape, block_size(qtype))
        if grouped is not None:
            note = f"stored as {list(grouped)} (rows of {grouped[1] // n} channels)"
            return Choice(qtype, grouped, f"{reason}; {note}" if reason else note)
    if n % block_size(qtype):
        return Choice(
            fallback.qtype,
            shape,
            f"row of {n} is not a multiple of {block_size(qtype)}; kept {fallback.qtype.name}",
        )
    return Choice(qtype, row_shape, reason)


# --------------------------------------------------------------------------------------------
# libggml (llama-cpp-python) for the K-quants


_GGML: ctypes.CDLL | None = None


def _find_libggml() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    for pattern in ("lib/libggml-base.*", "lib/libggml.*", "libggml-base.*", "libggml.*"):
        for cand in sorted(pkg.glob(pattern)):
            if cand.suffix in (".so", ".dylib", ".dll"):
                return cand
    return None


def libggml() -> ctypes.CDLL:
    """The bundled libggml of llama-cpp-python, or QuantError saying how to get it."""
    global _GGML
    if _GGML is not None:
        return _GGML
    path = _find_libggml()
    if path is None:
        raise QuantError(
            "K-quants (q4_k, q5_k, q6_k) need llama-cpp-python's libggml: "
            "pip install 'wyoming_kokoro_gguf[llama]' (or use q4_0 / q5_0 / q8_0)"
        )
    try:
        lib = ctypes.CDLL(str(path))
        fn = lib.ggml_quantize_chunk
    except (OSError, AttributeError) as exc:
        raise QuantError(f"cannot use {path} for K-quants: {exc}") from None
    fn.restype = ctypes.c_size_t
    fn.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    if hasattr(lib, "ggml_quantize_init"):
        lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    _GGML = lib
    return lib


def available_types() -> list[str]:
    """Type names this installation can write."""
    names = [n for n, t in TYPE_NAMES.items() if t not in K_QUANTS]
    if _find_libggml() is not None:
        names += [n for n, t in TYPE_NAMES.items() if t in K_QUANTS]
    return names


def _ggml_quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    lib = libggml()
    rows, n = data.shape
    bs, ts = GGML_QUANT_SIZES[qtype]
    src = np.ascontiguousarray(data, dtype=np.float32)
    out = np.empty((rows, n // bs * ts), dtype=np.uint8)
    if hasattr(lib, "ggml_quantize_init"):
        lib.ggml_quantize_init(int(qtype))
    written = lib.ggml_quantize_chunk(
        int(qtype), src.ctypes.data, out.ctypes.data, 0, rows, n, None
    )
    if written != out.nbytes:
        raise QuantError(f"libggml wrote {written} bytes for {qtype.name}, expected {out.nbytes}")
    return out


def quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Quantize a float32 array (last dimension = row) to ``qtype``: F32/F16 as floats, block
    types as uint8 [rows, bytes_per_row]."""
    a = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == T.F32:
        return a
    if qtype == T.F16:
        return a.astype(np.float16)
    if qtype in K_QUANTS:
        two_d = a.reshape(-1, a.shape[-1])
        return _ggml_quantize(two_d, qtype).reshape(*a.shape[:-1], -1)
    try:
        return gq.quantize(a, qtype)
    except NotImplementedError as exc:
        raise QuantError(f"gguf-py cannot quantize to {qtype.name}: {exc}") from None


def dequantize(raw: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Inverse of ``quantize`` (float32)."""
    if qtype == T.F32:
        return np.asarray(raw, dtype=np.float32)
    if qtype == T.F16:
        return np.asarray(raw).astype(np.float32)
    return np.asarray(gq.dequantize(np.asarray(raw), qtype), dtype=np.float32)


def error_bound(original: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """A per-element bound on |dequantized - original| for the legacy block formats, from their
    definitions (ggml-quants.c reference quantizers): per block of 32 with d = amax / 2^(b-1):
    Q8_0 |err| <= d/2 + fp16 rounding of d times 127; Q4_0/Q5_0 round to nearest except the clamped
    top level, so |err| <= d (we allow d plus d's fp16 rounding).  F16: half-precision rounding."""
    a = np.asarray(original, dtype=np.float32)
    if qtype == T.F32:
        return np.zeros_like(a)
    if qtype == T.F16:
        return np.abs(a) * 2.0**-11 + 6e-8
    bs = block_size(qtype)
    blocks = a.reshape(-1, bs)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    bits = {T.Q8_0: 8, T.Q5_0: 5, T.Q4_0: 4}.get(qtype)
    if bits is None:
        # K-quants: scales are themselves quantized; a loose bound of one step of 4 bits
        return np.broadcast_to(amax / 4.0, blocks.shape).reshape(a.shape).copy()
    d = amax / (2 ** (bits - 1) - (1 if bits == 8 else 0))
    d16 = d * (1 + 2.0**-10)  # d is stored as fp16
    bound = d16 * (0.5 if bits == 8 else 1.0) + d * 2.0**-10 * 2 ** (bits - 1) + 1e-12
    return np.broadcast_to(bound, blocks.shape).reshape(a.shape).copy()
